"""Restart-proof: alertpilot as a real process, killed with SIGKILL at awkward moments and started again."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.botapi import FakeBotAPI
from tests.fakes.kubectl import FakeKubectl
from tests.harness import (
    APPROVER,
    BOT_TOKEN,
    CHAT_ID,
    ROLES,
    TOKEN,
    AppProcess,
    eventually,
    fixture,
    free_port,
)


def card_sends(bot_api: FakeBotAPI, ref: str) -> list[dict]:
    return [
        r.params for r in bot_api.calls("sendMessage")
        if r.status == 200 and r.params.get("reply_markup") and f"{ref} ·" in r.params.get("text", "")
    ]


@pytest.fixture
async def process_env(tmp_path: Path, bot_api: FakeBotAPI) -> AsyncIterator[dict[str, str]]:
    yield {
        "ALERTPILOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/alertpilot.db",
        "ALERTPILOT_HTTP_PORT": str(free_port()),
        "ALERTPILOT_INGEST_TOKEN": TOKEN,
        "ALERTPILOT_TELEGRAM_TOKEN": BOT_TOKEN,
        "ALERTPILOT_TELEGRAM_API_BASE": bot_api.base_url,
        "ALERTPILOT_TELEGRAM_CHAT_ID": str(CHAT_ID),
        "ALERTPILOT_TELEGRAM_POLLING_TIMEOUT": "1",
        "ALERTPILOT_ROLES": ROLES,
        "ALERTPILOT_OUTBOX_MAX_BACKOFF_SECONDS": "1",
        "ALERTPILOT_LOG_FORMAT": "json",
    }


async def post(app: AppProcess, payload: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        return await client.post("/webhooks/alertmanager", json=payload, headers={"Authorization": f"Bearer {TOKEN}"})


async def incident(app: AppProcess, ref: str) -> dict:
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        return (await client.get(f"/api/incidents/{ref}", headers={"Authorization": f"Bearer {TOKEN}"})).json()


async def decision_of(app: AppProcess, ref: str) -> dict | None:
    return (await incident(app, ref)).get("decision")


async def card_refs(app: AppProcess) -> list[dict]:
    return (await incident(app, "INC-1"))["messages"]


async def test_kill_between_ingest_and_card_then_restart_sends_card_once(
    tmp_path: Path, bot_api: FakeBotAPI, process_env: dict[str, str]
) -> None:
    app = AppProcess(process_env, tmp_path)
    try:
        await app.start()
        bot_api.block_chat(CHAT_ID, status=502, description="Bad Gateway")  # Telegram is down
        assert (await post(app, fixture("01-firing-one-alert.json"))).status_code == 200
        await eventually(lambda: decision_of(app, "INC-1"))  # analysed, card queued, not delivered
        app.kill()
        assert card_sends(bot_api, "INC-1") == []

        bot_api.unblock_chat(CHAT_ID)
        await app.start()
        await eventually(lambda: card_sends(bot_api, "INC-1"), timeout=20)
        await eventually(lambda: bot_api.calls("getUpdates"))
        assert len(card_sends(bot_api, "INC-1")) == 1
    finally:
        app.stop()


async def test_after_restart_updates_thread_under_the_original_card(
    tmp_path: Path, bot_api: FakeBotAPI, process_env: dict[str, str]
) -> None:
    app = AppProcess(process_env, tmp_path)
    try:
        await app.start()
        await post(app, fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: card_sends(bot_api, "INC-1"), timeout=20)
        card_id = next(m["message_id"] for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup"))
        # Kill once the card's message id is stored. (Killed between Telegram's answer and that commit, the
        # card would be sent again after the restart: delivery is at-least-once, never at-most-once.)
        await eventually(lambda: card_refs(app), timeout=20)
        app.kill()

        await app.start()
        await post(app, fixture("02-firing-two-alerts.json"))  # a new alert joins: the card is edited
        await bot_api.wait_for(
            "editMessageText",
            predicate=lambda r: r.params["message_id"] == card_id and "2 alerts" in r.params["text"],
            timeout=20,
        )
        bot_api.inject_message(CHAT_ID, APPROVER, "/approve INC-1", username="alice")
        reply = await bot_api.wait_for(
            "sendMessage",
            predicate=lambda r: "Approved by @alice" in r.params["text"] and not r.params.get("reply_markup"),
            timeout=20,
        )
        assert reply[0].params["reply_parameters"]["message_id"] == card_id
        resolved = copy.deepcopy(fixture("04-resolved.json"))
        resolved["alerts"] += copy.deepcopy(fixture("03-firing-one-resolved.json"))["alerts"][:1]
        await post(app, resolved)
        done = await bot_api.wait_for("sendMessage", predicate=lambda r: "resolved after" in r.params["text"], timeout=20)
        assert done[0].params["reply_parameters"]["message_id"] == card_id
        assert len(card_sends(bot_api, "INC-1")) == 1
        assert card == card_sends(bot_api, "INC-1")[0]
    finally:
        app.stop()


async def test_kill_during_a_command_reports_it_interrupted_and_never_reruns_it(
    tmp_path: Path, bot_api: FakeBotAPI, process_env: dict[str, str]
) -> None:
    kubectl = FakeKubectl(tmp_path / "kubectl").install().on("rollout restart", hang=True)
    env = {**process_env, "ALERTPILOT_EXECUTOR": "kubectl", "ALERTPILOT_KUBECTL": str(kubectl.path)}
    app = AppProcess(env, tmp_path)
    try:
        await app.start()
        await post(app, fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: card_sends(bot_api, "INC-1"), timeout=20)
        card_id = next(m["message_id"] for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup"))
        approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        bot_api.inject_callback(CHAT_ID, APPROVER, card_id, approve, username="alice")
        await eventually(lambda: kubectl.calls_matching("rollout restart"), timeout=20)  # the command is running
        app.kill()

        await app.start()
        interrupted = await bot_api.wait_for(
            "sendMessage", predicate=lambda r: "Interrupted" in r.params.get("text", ""), timeout=20
        )
        assert interrupted[0].params["reply_parameters"]["message_id"] == card_id
        body = await incident(app, "INC-1")
        assert body["decision"]["state"] == "interrupted"
        assert body["executions"][0]["state"] == "interrupted"
        assert len(kubectl.calls_matching("rollout restart")) == 1  # never re-run blindly
    finally:
        app.stop()
        kubectl.kill_running()
