"""End to end: a critical incident is analysed by three fake models at once (ALERTPILOT_CONSENSUS_MODELS, each
model on its own OpenAI-compatible server). The card shows the agreed proposal and "3/3 agree" / "2/3 agree";
🔍 Details lists every vote; a dissent that proposes a two-approver command raises the card's tier; auto-
remediation needs full agreement. WeCom shows the same through its cards and `details INC-1`."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start
from tests.e2e.test_ai_flow import proposal_cards
from tests.e2e.test_telegram_flow import button, cards
from tests.e2e.test_wecom_callback_e2e import crypto, mention, opened, post_callback, sealed
from tests.e2e.test_wecom_callback_e2e import start as start_callback_app
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply
from tests.harness import CHAT_ID, VIEWER, eventually, fixture

__all__ = ["crypto"]  # the WeCom crypto fixture, used by the WeCom test below

RESTART = "kubectl -n prod rollout restart deployment/api"  # one approver (blast 12)
RESTART_AGAIN = "kubectl rollout restart deploy api --namespace=prod"  # the same remediation, written differently
SCALE_TO_ZERO = "kubectl -n prod scale deployment/api --replicas=0"  # two approvers (blast 53)
DELETE_POD = "kubectl -n default delete pod db-0"  # blast 10: auto when trusted and auto-remediation is on


def proposal(command: str, **overrides: Any) -> dict[str, Any]:
    return {**VALID_PROPOSAL, "action": command, **overrides}


@pytest.fixture
async def panel() -> AsyncIterator[list[FakeOpenAI]]:
    async with FakeOpenAI(model="model-a") as a, FakeOpenAI(model="model-b") as b, FakeOpenAI(model="model-c") as c:
        yield [a, b, c]


def consensus_models(panel: list[FakeOpenAI]) -> str:
    return ",".join(f"{fake.model}@{fake.base_url}" for fake in panel)


def critical_alert(severity: str = "critical") -> dict[str, Any]:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    for labels in [payload["commonLabels"], *(a["labels"] for a in payload["alerts"])]:
        labels["severity"] = severity
    return payload


async def incident(app: Any) -> dict[str, Any]:
    return (await app.get("/api/incidents/INC-1")).json()


async def test_three_models_agree_and_the_card_says_3_of_3(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    a, b, c = panel
    a.default, b.default, c.default = proposal(RESTART), proposal(RESTART_AGAIN, confidence=0.7), proposal(RESTART)
    app = await start(tmp_path, bot_api, model, consensus_models=consensus_models(panel))
    try:
        await app.post_alerts(critical_alert())
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "🤝 3/3 agree" in card["text"] and "dissent" not in card["text"]
        assert RESTART in card["text"] and "→ 1 approver" in card["text"]
        assert "confidence 70%" in card["text"]  # the agreeing analyses' lowest confidence
        assert [len(f.requests) for f in panel] == [1, 1, 1] and model.requests == []  # the panel, not the main model
        body = await incident(app)
        assert body["decision"]["consensus"]["agree"] == 3 and body["decision"]["consensus"]["of"] == 3
        outcomes = sorted(d["outcome"] for d in body["decisions"])
        assert outcomes == ["used", "vote", "vote"]  # every analysis is on the record
        metrics = (await app.http.get("/metrics")).text
        assert 'alertpilot_ai_consensus_total{agreement="full"} 1' in metrics
        assert 'alertpilot_ai_budget{budget="tokens"} 20000' in metrics  # the per-analysis budgets are reported
        assert 'alertpilot_ai_budget{budget="tool_calls"} 6' in metrics
        assert "alertpilot_ai_analysis_tokens_count 3" in metrics  # what each of the three analyses spent
    finally:
        await app.stop()


async def test_a_two_approver_dissent_raises_the_tier_and_details_lists_it(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    a, b, c = panel
    a.default = proposal(RESTART)
    b.default = proposal(SCALE_TO_ZERO, root_cause="A bad rollout: stop the pods until it is fixed.")
    c.default = proposal(RESTART_AGAIN)
    app = await start(tmp_path, bot_api, model, consensus_models=consensus_models(panel))
    try:
        await app.post_alerts(critical_alert())
        [card] = await eventually(lambda: proposal_cards(bot_api))
        text = card["text"]
        assert "⚖️ 2/3 agree" in text and "the dissent in 🔍 Details" in text and "stricter tier" in text
        assert RESTART in text and SCALE_TO_ZERO not in text  # the agreed proposal is the one on the card
        assert "Blast radius 12" in text and "→ 2 approvers" in text and "0/2 approvals" in text
        decision = (await incident(app))["decision"]
        assert decision["tier"] == "two_approvers" and decision["required_approvals"] == 2
        dissent = [v for v in decision["consensus"]["votes"] if not v["agrees"]]
        assert [(v["member"], v["command"], v["tier"]) for v in dissent] == [("model-b", SCALE_TO_ZERO, "two_approvers")]

        [sent] = cards(bot_api)
        bot_api.inject_callback(CHAT_ID, VIEWER, sent["message_id"], button(sent, "🔍"))
        [listed] = await bot_api.wait_for("sendMessage", predicate=lambda r: "consensus" in r.params["text"])
        shown = listed.params["text"]
        assert "2/3 agree" in shown and "model-b" in shown and "dissents" in shown and "2 approvers" in shown
        assert "scale deployment/api --replicas=0" in shown and "A bad rollout" in shown
        assert listed.params["reply_parameters"]["message_id"] == sent["message_id"]  # threaded under the card
    finally:
        await app.stop()


async def test_auto_remediation_needs_full_agreement(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    for fake in panel:
        fake.default = proposal(DELETE_POD, confidence=0.9)
    app = await start(tmp_path, bot_api, model, consensus_models=consensus_models(panel), auto_remediation=True)
    try:
        await app.post_alerts(critical_alert())
        await eventually(lambda: any("3/3 agree" in c["text"] for c in proposal_cards(bot_api)))
        decision = await eventually(lambda: _decided(app))
        assert decision["tier"] == "auto" and decision["decided_by"] == "alertpilot"  # all agree: it runs by itself
    finally:
        await app.stop()



async def test_partial_agreement_withholds_auto_remediation(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    a, b, c = panel
    a.default = b.default = proposal(DELETE_POD, confidence=0.9)
    c.default = proposal("kubectl -n default delete pod db-1", confidence=0.9)  # another pod: a dissent, also auto tier
    app = await start(tmp_path, bot_api, model, consensus_models=consensus_models(panel), auto_remediation=True)
    try:
        await app.post_alerts(critical_alert())
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "2/3 agree" in card["text"] and "Awaiting approval" in card["text"] and "→ 1 approver" in card["text"]
        decision = (await incident(app))["decision"]
        assert decision["tier"] == "one_approver" and decision["state"] == "pending" and decision["decided_by"] is None
    finally:
        await app.stop()


async def _decided(app: Any) -> dict[str, Any] | None:
    decision = (await incident(app))["decision"]
    return decision if decision and decision["decided_by"] else None


async def test_a_model_that_does_not_answer_within_the_sla_counts_against_agreement(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    a, b, c = panel
    a.default, b.default = proposal(RESTART), proposal(RESTART)
    c.default = Reply.hang()
    app = await start(tmp_path, bot_api, model, consensus_models=consensus_models(panel))
    try:
        await app.post_alerts(critical_alert())
        [card] = await eventually(lambda: proposal_cards(bot_api), timeout=10)
        assert "⚖️ 2/3 agree" in card["text"] and RESTART in card["text"]
        body = await incident(app)
        [silent] = [v for v in body["decision"]["consensus"]["votes"] if v["member"] == "model-c"]
        assert "SLA" in silent["error"] and not silent["agrees"]
        failed = [d for d in body["decisions"] if d["outcome"] == "failed"]
        assert [(d["model"], d["fallback_reason"]) for d in failed] == [("model-c", "timeout")]
    finally:
        await app.stop()


async def test_other_severities_get_one_analysis_and_samples_of_one_model_work(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI, panel: list[FakeOpenAI]
) -> None:
    model.default = proposal(RESTART)
    app = await start(tmp_path, bot_api, model, consensus_models="fake-model*3")
    try:
        await app.post_alerts(critical_alert("warning"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "agree" not in card["text"] and len(model.requests) == 1
        assert model.requests[0]["temperature"] == 0
        model.clear_requests()

        payload = critical_alert("P1")  # ALERTPILOT_CONSENSUS_SEVERITIES' default includes P1
        payload["groupKey"] = '{}:{alertname="Other"}'
        payload["alerts"][0]["fingerprint"] = "0123456789abcdef"
        await app.post_alerts(payload)
        await eventually(lambda: any("3/3 agree" in c["text"] for c in proposal_cards(bot_api)))
        await model.wait_for_requests(3)
        assert [r["temperature"] for r in model.requests] == [0.7, 0.7, 0.7]  # independent samples
    finally:
        await app.stop()


async def test_wecom_shows_the_agreement_and_details_lists_the_votes(
    tmp_path: Path, model: FakeOpenAI, panel: list[FakeOpenAI], crypto: Any
) -> None:
    a, b, c = panel
    a.default, b.default, c.default = proposal(RESTART), proposal(SCALE_TO_ZERO), proposal(RESTART)
    app = await start_wecom(tmp_path, model, consensus_models=consensus_models(panel))
    try:
        await app.post_alerts(critical_alert())
        await eventually(lambda: _proposed(app))
        reply = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot INC-1"))))
        card = reply["template_card"]
        source = [item["value"] for item in card["horizontal_content_list"]]
        assert any("2/3 agree" in value for value in source)
        assert any("2 approvers" in value for value in source)

        details = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot details INC-1"))))
        content = details["markdown"]["content"]
        assert "consensus 2/3 agree" in content and "model-b" in content and SCALE_TO_ZERO in content
        assert "dissents" in content

        usage = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot details"))))
        assert "details INC-12" in usage["markdown"]["content"]
    finally:
        await app.stop()


async def _proposed(app: Any) -> bool:
    decision = (await incident(app))["decision"]
    return decision is not None


async def start_wecom(tmp_path: Path, model: FakeOpenAI, **overrides: Any) -> Any:
    return await start_callback_app(
        tmp_path, ai_base_url=model.base_url, ai_model="fake-model", decision_sla_seconds=2.0, ai_timeout_seconds=10,
        **overrides,
    )

