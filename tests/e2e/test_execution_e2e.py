"""End to end: alert → card → approve → the fake kubectl (first on PATH) runs → threaded success → the
alerts resolve → a playbook is learned → the same alert again gets the playbook's proposal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bot.render import html_to_text
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.kubectl import FakeKubectl
from tests.harness import APPROVER, CHAT_ID, VIEWER, AppUnderTest, app_settings, eventually, fixture, start_app


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubectl:
    fake = FakeKubectl(tmp_path / "kubectl").install()
    monkeypatch.setenv("PATH", f"{fake.bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


async def start(tmp_path: Path, bot_api: FakeBotAPI, **overrides: Any) -> AppUnderTest:
    settings = app_settings(
        tmp_path, bot_api=bot_api.base_url, executor="kubectl", retry_delay_seconds=0.1, verify_timeout_seconds=5,
        **overrides,
    )
    running = await start_app(settings)
    await bot_api.wait_for("getUpdates")
    return running


def card_of(bot_api: FakeBotAPI, ref: str) -> dict[str, Any] | None:
    for message in bot_api.sent_messages(CHAT_ID):
        if message.get("reply_markup") is not None and f"· {ref} ·" in html_to_text(message["text"]):
            return message
    return None


def proposed_card(bot_api: FakeBotAPI, ref: str) -> dict[str, Any] | None:
    card = card_of(bot_api, ref)
    return card if card is not None and "Proposal:" in html_to_text(card["text"]) else None


def thread_of(bot_api: FakeBotAPI, card: dict[str, Any]) -> list[str]:
    return [
        html_to_text(m["text"]) for m in bot_api.sent_messages(CHAT_ID)
        if (m.get("reply_parameters") or {}).get("message_id") == card["message_id"]
    ]


def approve_button(card: dict[str, Any]) -> str:
    return next(b["callback_data"] for row in card["reply_markup"]["inline_keyboard"] for b in row if b["text"].startswith("✅"))


async def test_approved_remediation_runs_resolves_and_becomes_a_playbook(
    tmp_path: Path, bot_api: FakeBotAPI, kubectl: FakeKubectl
) -> None:
    app = await start(tmp_path, bot_api)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        card = await eventually(lambda: proposed_card(bot_api, "INC-1"))
        command = (await app.get("/api/incidents/INC-1")).json()["decision"]["command"]
        bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], approve_button(card), username="alice")

        await eventually(lambda: any("Remediated in" in t for t in thread_of(bot_api, card)))
        thread = thread_of(bot_api, card)
        assert any("Approved by @alice" in t for t in thread)
        assert any(t.startswith("▶️ Running · approved by @alice") and command in t for t in thread)
        assert any("waiting for alerts to resolve" in t for t in thread)
        assert [c[-len(command.split()) + 1:] for c in kubectl.calls if "restart" in c] == [command.split()[1:]]
        await eventually(lambda: "Remediated · approved by @alice" in html_to_text(bot_api.messages[CHAT_ID][card["message_id"]]["text"]))

        # /audit shows what ran, who approved it and every attempt
        bot_api.inject_message(CHAT_ID, VIEWER, "/audit INC-1", username="vera")
        [audit] = await bot_api.wait_for("sendMessage", predicate=lambda r: "Audit of INC-1" in r.params.get("text", ""))
        text = html_to_text(audit.params["text"])
        assert "approved by @alice" in text and "attempt 1 · exit 0" in text and "rollout" in text

        # the alerts resolve: the fix worked, and it is learned as a playbook
        await app.post_alerts(fixture("03-firing-one-resolved.json"))
        await app.post_alerts(fixture("04-resolved.json"))
        body = await eventually(_resolved(app, "INC-1"))
        assert body["remediated_at"] is not None
        bot_api.inject_message(CHAT_ID, VIEWER, "/playbooks", username="vera")
        [listing] = await bot_api.wait_for("sendMessage", predicate=lambda r: "learned-" in r.params.get("text", ""))
        assert "1/1" in html_to_text(listing.params["text"]) or "100" in html_to_text(listing.params["text"])

        # the same alert fires again: the learned playbook answers, not the rules
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        second = (await eventually(_decided(app, "INC-2")))["decision"]
        assert second["source"] == "playbook" and second["playbook"].startswith("learned-diskfull")
        assert second["command"] == command
        card2 = await eventually(lambda: card_of(bot_api, "INC-2"))
        await eventually(lambda: "playbook learned-" in html_to_text(
            bot_api.messages[CHAT_ID][card2["message_id"]]["text"]))
    finally:
        await app.stop()


def _resolved(app: AppUnderTest, ref: str) -> Any:
    async def check() -> dict[str, Any] | None:
        body = (await app.get(f"/api/incidents/{ref}")).json()
        return body if body["status"] == "resolved" else None
    return check


def _decided(app: AppUnderTest, ref: str) -> Any:
    async def check() -> dict[str, Any] | None:
        response = await app.get(f"/api/incidents/{ref}")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body.get("decision") else None
    return check


async def test_failed_rollout_rolls_back_and_sends_one_failure_analysis(
    tmp_path: Path, bot_api: FakeBotAPI, kubectl: FakeKubectl
) -> None:
    kubectl.on("rollout status", fail='error: deployment "db" exceeded its progress deadline')
    kubectl.on("rollout restart", transient=1)
    app = await start(tmp_path, bot_api, failure_notify=f"tg:{APPROVER}")
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        decided = await eventually(_decided(app, "INC-1"))
        assert "rollout restart" in decided["decision"]["command"]
        card = await eventually(lambda: proposed_card(bot_api, "INC-1"))
        bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], approve_button(card), username="alice")
        await eventually(lambda: any("Rolled back" in t for t in thread_of(bot_api, card)))
        thread = thread_of(bot_api, card)
        assert any("attempt 1 failed (connection refused); retrying in 0 s (1/2)" in t for t in thread)
        assert any("Rolling back:" in t and "rollout undo" in t for t in thread)
        # one failure analysis, to the person configured (a direct message), with the rule-based analysis
        [dm] = await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == APPROVER)
        text = html_to_text(dm.params["text"])
        assert "Remediation failed: INC-1 DiskFull" in text and "did not become healthy" in text
        assert len(kubectl.calls_matching("rollout undo")) == 1
        body = (await app.get("/api/incidents/INC-1")).json()
        assert body["decision"]["state"] == "rolled_back"
        assert [a["step"] for a in body["executions"][0]["attempts"]] == [
            "dry_run", "run", "run", "verify", "history", "rollback"
        ]
        assert len([r for r in bot_api.calls("sendMessage") if r.params.get("chat_id") == APPROVER]) == 1
    finally:
        await app.stop()
