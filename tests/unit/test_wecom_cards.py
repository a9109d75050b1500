"""The WeCom template card: fields from templates/wecom/strings.j2, clipped; task ids lead back to incidents."""

from __future__ import annotations

import dataclasses
from zoneinfo import ZoneInfo

from bot.render import Renderer
from bot.wecom_cards import (
    DESC_MAX,
    TEXT_MAX,
    TITLE_MAX,
    VALUE_MAX,
    card_reply,
    incident_of_task,
    task_id,
    update_reply,
)
from services.ports import CardAction
from tests.unit.test_wecom_robot import card

RENDERER = Renderer(ZoneInfo("Asia/Taipei"))


def test_wecom_card_has_buttons_while_a_decision_is_open() -> None:
    reply = card_reply(RENDERER, card())
    template = reply["template_card"]
    assert reply["msgtype"] == "template_card" and template["card_type"] == "button_interaction"
    assert [b["key"] for b in template["button_list"]] == ["approve", "reject", "details"]
    assert template["main_title"]["title"].startswith("🔴 INC-12")
    values = {item["keyname"]: item["value"] for item in template["horizontal_content_list"]}
    assert values["State"] == "⏳ Awaiting approval" and values["Blast"] == "12 → 1 approver"
    assert "kubectl -n prod rollout restart statefulset/db" in template["sub_title_text"]


def test_wecom_card_after_a_decision_keeps_details_only() -> None:
    decided = card(actions=(CardAction.DETAILS, CardAction.HISTORY))
    assert decided.proposal is not None
    decided = dataclasses.replace(decided, proposal=dataclasses.replace(decided.proposal, state="approved",
                                                                       decided_by="@alice"))
    reply = update_reply(RENDERER, decided, note="✅ INC-12 approved")
    assert reply["response_type"] == "update_template_card"
    template = reply["template_card"]
    assert [b["key"] for b in template["button_list"]] == ["details"]
    assert template["sub_title_text"] == "✅ INC-12 approved"
    assert {i["keyname"]: i["value"] for i in template["horizontal_content_list"]}["State"] == "✅ Approved by @alice"


def test_wecom_card_fields_are_clipped() -> None:
    long = card(title="T" * 300, service="s" * 200, summary="x" * 500)
    template = update_reply(RENDERER, long, details=True)["template_card"]
    assert len(template["main_title"]["title"]) <= TITLE_MAX and len(template["main_title"]["desc"]) <= DESC_MAX
    assert len(template["sub_title_text"]) <= TEXT_MAX
    assert all(len(i["value"]) <= VALUE_MAX for i in template["horizontal_content_list"])


def test_wecom_task_ids_are_new_each_time_and_name_the_incident() -> None:
    first, second = task_id(card()), task_id(card())
    assert first != second and first.startswith("INC-12-")
    assert incident_of_task(first) == 12
    assert incident_of_task("INC-12-1") == 12  # the recorded fixture's form
    assert incident_of_task("INC-12") == 12
    assert incident_of_task("INC-x-1") is None and incident_of_task("") is None and incident_of_task("JOB-1") is None
