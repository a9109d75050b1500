"""The WeCom group-robot gateway against the fake WeCom server over loopback: markdown sends, errcode
handling (45009, 93000, 40058, others), shrinking to WeCom's byte limits, and no edits."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import structlog

from bot.chat.wecom import WeComRobotGateway, mask_key, robot_id, shrink
from bot.render import WECOM_MARKDOWN_LIMIT, WECOM_TEXT_LIMIT, Renderer, clip_bytes, markdown_to_text
from services.errors import PermanentDeliveryError, RateLimited, TransientDeliveryError
from services.ports import CardAction, IncidentCard, ProposalView
from tests.fakes.wecom import FakeWeCom

KEY = "robot-key-0001"
CHAT = robot_id(KEY)
SINCE = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)


def card(**changes: object) -> IncidentCard:
    proposal = ProposalView(
        state="pending", source="rules", model=None, category="storage", root_cause="disk usage above 90%",
        command="kubectl -n prod rollout restart statefulset/db", risk="medium", reasoning="rule storage",
        confidence=None, decided_by=None, decided_at=None, decision_reason=None, blast_score=12, tier="one_approver",
        reasons=("rollout restart 8", "× prod 1.5", "= 12"),
    )
    base = IncidentCard(
        incident_id=12, ref="INC-12", status="firing", severity="critical", priority="P1", title="DiskFull",
        service="db", namespace="prod", summary="Disk almost full", alert_count=2, firing_count=2, repeat_count=3,
        since=SINCE, resolved_at=None, duration_minutes=None, analysing=False, proposal=proposal,
        actions=(CardAction.APPROVE, CardAction.REJECT, CardAction.DETAILS, CardAction.REANALYSE, CardAction.HISTORY),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
async def wecom() -> AsyncIterator[FakeWeCom]:
    async with FakeWeCom(keys=(KEY,)) as fake:
        yield fake


@pytest.fixture
async def gateway(wecom: FakeWeCom) -> AsyncIterator[WeComRobotGateway]:
    async with httpx.AsyncClient(base_url=wecom.base_url + "/", timeout=5, trust_env=False) as client:
        yield WeComRobotGateway(client, Renderer(ZoneInfo("Asia/Taipei")), (KEY, "robot-key-0002"), oncall=("zhangsan",))


async def test_wecom_card_is_markdown_naming_the_incident_and_mentions_on_call(
    gateway: WeComRobotGateway, wecom: FakeWeCom
) -> None:
    message_id = await gateway.send_card(CHAT, card(), edit_message_id=None)
    [sent] = wecom.delivered(KEY)
    assert sent.msgtype == "markdown" and message_id.startswith("wecom-")
    assert "INC-12" in sent.content.splitlines()[0] and "DiskFull" in sent.content
    assert "kubectl -n prod rollout restart statefulset/db" in sent.content
    assert "<@zhangsan>" in sent.content
    assert gateway.chat_ids == (CHAT, robot_id("robot-key-0002")) and KEY not in CHAT


async def test_wecom_card_edit_sends_nothing_until_the_proposal_changes(
    gateway: WeComRobotGateway, wecom: FakeWeCom
) -> None:
    analysing = await gateway.send_card(CHAT, card(analysing=True, proposal=None), edit_message_id=None)
    assert gateway.can_edit is False and not gateway.shows(analysing, card())
    first = await gateway.send_card(CHAT, card(), edit_message_id=analysing)  # the proposal came: posted again
    assert first != analysing and gateway.shows(first, card(status="resolved"))
    assert await gateway.send_card(CHAT, card(status="resolved"), edit_message_id=first) == first  # no edit
    assert len(wecom.delivered(KEY)) == 2 and "kubectl" in wecom.delivered(KEY)[1].content


async def test_wecom_message_renders_its_template_and_neutralises_values(
    gateway: WeComRobotGateway, wecom: FakeWeCom
) -> None:
    await gateway.send_message(CHAT, "resolved", {"ref": "INC-12", "minutes": 14, "at": SINCE.isoformat()}, reply_to=None)
    await gateway.send_message(
        CHAT, "error", {"code": "unknown_command", "command": "<@all> **x** [l](http://evil)"}, reply_to=None
    )
    resolved, hostile = wecom.delivered(KEY)
    assert "INC-12" in resolved.content and "14 min" in resolved.content
    assert "<@all>" not in hostile.content and "＜@all＞" in hostile.content and "[l](" not in hostile.content


async def test_wecom_rate_limit_45009_backs_off_a_minute(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    wecom.fail_next(45009)
    with pytest.raises(RateLimited) as raised:
        await gateway.send_card(CHAT, card(), edit_message_id=None)
    assert raised.value.retry_after >= 60


async def test_wecom_invalid_key_93000_is_a_configuration_error(wecom: FakeWeCom) -> None:
    async with httpx.AsyncClient(base_url=wecom.base_url + "/", trust_env=False) as client:
        gateway = WeComRobotGateway(client, Renderer(ZoneInfo("UTC")), ("not-a-known-key",))
        with structlog.testing.capture_logs() as logs, pytest.raises(PermanentDeliveryError) as raised:
            await gateway.send_card(robot_id("not-a-known-key"), card(), edit_message_id=None)
    assert "93000" in str(raised.value) and "ALERTPILOT_WECOM_WEBHOOK_KEYS" in str(raised.value)
    assert "not-a-known-key" not in str(raised.value)  # the secret is masked
    [event] = [e for e in logs if e["event"] == "wecom_robot_key_invalid"]
    assert event["robot"] == mask_key("not-a-known-key")


async def test_wecom_bad_parameter_40058_is_retried_once_as_text(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    wecom.fail_next(40058)
    context = {"ref": "INC-12", "minutes": 14, "at": SINCE.isoformat()}
    await gateway.send_message(CHAT, "resolved", {**context, "mentions": ["lisi"]}, reply_to=None)
    refused, text = wecom.sends
    assert refused.msgtype == "markdown" and refused.errcode == 40058
    assert text.msgtype == "text" and text.errcode == 0 and "INC-12" in text.content
    assert "**" not in text.content and len(text.content.encode()) <= WECOM_TEXT_LIMIT
    assert text.body["text"]["mentioned_list"] == ["lisi"]


async def test_wecom_per_channel_mentions_take_the_wecom_ids(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    """A reminder's context goes to every card chat with the approvers of each channel; WeCom mentions its own."""
    wecom.fail_next(40058)
    context = {"ref": "INC-12", "minutes": 14, "at": SINCE.isoformat(), "mentions": {"telegram": ["111"], "wecom": ["lisi"]}}
    await gateway.send_message(CHAT, "resolved", context, reply_to=None)
    _, text = wecom.sends
    assert text.body["text"]["mentioned_list"] == ["lisi"]


async def test_wecom_bad_parameter_twice_fails(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    wecom.fail_next(40058, times=2)
    with pytest.raises(PermanentDeliveryError, match="40058"):
        await gateway.send_card(CHAT, card(), edit_message_id=None)
    assert len(wecom.sends) == 2


async def test_wecom_other_errcode_is_recorded(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    wecom.fail_next(40001)
    with pytest.raises(PermanentDeliveryError, match="errcode 40001"):
        await gateway.send_card(CHAT, card(), edit_message_id=None)


async def test_wecom_unknown_robot_is_refused_without_a_request(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    with pytest.raises(PermanentDeliveryError, match="not a configured robot"):
        await gateway.send_card("robot-unknown", card(), edit_message_id=None)
    assert wecom.sends == []


async def test_wecom_server_errors_and_no_answer_are_transient() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="bad gateway")

    async with httpx.AsyncClient(base_url="http://127.0.0.1:9/", transport=httpx.MockTransport(answer)) as client:
        gateway = WeComRobotGateway(client, Renderer(ZoneInfo("UTC")), (KEY,))
        with pytest.raises(TransientDeliveryError):
            await gateway.send_card(CHAT, card(), edit_message_id=None)
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9/", timeout=2) as client:  # nothing listens there
        gateway = WeComRobotGateway(client, Renderer(ZoneInfo("UTC")), (KEY,))
        with pytest.raises(TransientDeliveryError):
            await gateway.send_card(CHAT, card(), edit_message_id=None)


async def test_wecom_cjk_card_is_shrunk_to_fit_the_byte_limit(gateway: WeComRobotGateway, wecom: FakeWeCom) -> None:
    wide = "磁盘使用率超过阈值" * 60  # 3 bytes a character
    big = card(title=wide[:200], summary=wide[:300], service=wide[:80])
    assert big.proposal is not None
    big = dataclasses.replace(big, proposal=dataclasses.replace(
        big.proposal, root_cause=wide[:450], reasoning=wide[:300], reasons=(wide[:200],)))
    await gateway.send_card(CHAT, big, edit_message_id=None)
    [sent] = wecom.delivered(KEY)
    assert len(sent.content.encode()) <= WECOM_MARKDOWN_LIMIT
    assert "kubectl -n prod rollout restart statefulset/db" in sent.content  # the command stays whole
    assert "…" in sent.content


def test_shrink_and_plain_text() -> None:
    assert shrink({"a": "x" * 10, "b": ["y" * 10, 3], "c": None}, 5) == {"a": "xxxx…", "b": ["yyyy…", 3], "c": None}
    assert markdown_to_text('**INC-1** <font color="warning">down</font> `kubectl get` <@zhangsan>') == (
        "INC-1 down kubectl get @zhangsan"
    )
    assert mask_key("0123456789abcdef") == "0123…ef" and mask_key("short") == "…"
    assert clip_bytes("磁盘" * 10, 10) == "磁盘…" and clip_bytes("short", 10) == "short"
