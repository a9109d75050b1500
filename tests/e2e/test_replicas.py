"""Replicas (issue 8): two alertpilot processes on one PostgreSQL, Telegram in webhook mode, as behind a load
balancer that sends any request to either. The same Alertmanager notifications reach both, the same button
presses reach both (Telegram redelivering, a retrying proxy) → every alert stored once, one card per incident,
every press applied once, every approved command run once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_restart import burst_alert, card_sends
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    BOT_TOKEN,
    CHAT_ID,
    ROLES,
    TOKEN,
    AppProcess,
    eventually,
    free_port,
    scratch_postgres_database,
)

SECRET = "replica-secret"
INCIDENTS = 8


@pytest.fixture
async def replicas(tmp_path: Path, bot_api: FakeBotAPI) -> AsyncIterator[list[AppProcess]]:
    url, drop = await scratch_postgres_database()
    shared = {
        "ALERTPILOT_DATABASE_URL": url,
        "ALERTPILOT_AUTO_MIGRATE": "true",  # both start together: one migrates, under the lock
        "ALERTPILOT_INGEST_TOKEN": TOKEN,
        "ALERTPILOT_TELEGRAM_TOKEN": BOT_TOKEN,
        "ALERTPILOT_TELEGRAM_API_BASE": bot_api.base_url,
        "ALERTPILOT_TELEGRAM_CHAT_ID": str(CHAT_ID),
        "ALERTPILOT_TELEGRAM_MODE": "webhook",
        "ALERTPILOT_TELEGRAM_WEBHOOK_URL": "https://alertpilot.example.com/telegram/webhook",
        "ALERTPILOT_TELEGRAM_WEBHOOK_SECRET": SECRET,
        "ALERTPILOT_ROLES": ROLES,
        "ALERTPILOT_OUTBOX_MAX_BACKOFF_SECONDS": "1",
        "ALERTPILOT_LOG_FORMAT": "json",
    }
    apps = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        apps.append(AppProcess({**shared, "ALERTPILOT_HTTP_PORT": str(free_port())}, tmp_path / name))
    try:
        await asyncio.gather(*(app.start(timeout=40) for app in apps))
        yield apps
    finally:
        for app in apps:
            app.stop()
        await drop()


async def to_both(apps: list[AppProcess], path: str, body: dict[str, Any], headers: dict[str, str]) -> list[httpx.Response]:
    async def one(app: AppProcess) -> httpx.Response:
        async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as client:
            return await client.post(path, json=body, headers=headers)
    return list(await asyncio.gather(*(one(app) for app in apps)))


async def api(app: AppProcess, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=app.base_url, timeout=10) as client:
        return (await client.get(path, params=params, headers={"Authorization": f"Bearer {TOKEN}"})).json()


async def test_two_replicas_on_one_postgres_do_everything_once(replicas: list[AppProcess], bot_api: FakeBotAPI) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers = await asyncio.gather(*(to_both(replicas, "/webhooks/alertmanager", burst_alert(i), auth)
                                     for i in range(INCIDENTS)))
    assert all(r.status_code == 200 for pair in answers for r in pair)

    for app in replicas:  # both read the same database
        stats = await api(app, "/api/stats")
        assert stats["alerts"] == INCIDENTS and stats["incidents"]["total"] == INCIDENTS
    refs = [item["ref"] for item in (await api(replicas[1], "/api/incidents", limit=50))["items"]]
    assert len(refs) == INCIDENTS  # (PostgreSQL may skip ids: a transaction that lost a race used one)
    await eventually(lambda: all(card_sends(bot_api, ref) for ref in refs), timeout=40)

    presses = []
    for ref in refs:
        [card] = card_sends(bot_api, ref)
        card_id = next(m["message_id"] for m in bot_api.sent_messages(CHAT_ID)
                       if m.get("reply_markup") and f"{ref} ·" in m["text"])
        approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        presses.append(bot_api.inject_callback(CHAT_ID, APPROVER, card_id, approve, username="alice"))
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    delivered = await asyncio.gather(*(to_both(replicas, "/telegram/webhook", press, headers) for press in presses))
    for pair in delivered:  # each press stored by one replica, recognised as a redelivery by the other
        assert sorted(r.json().get("duplicate", False) for r in pair) == [False, True]

    def texts(needle: str) -> list[str]:  # thread messages (not cards), as they read now (some are edited)
        return [m["text"] for m in bot_api.sent_messages(CHAT_ID) if needle in m["text"] and not m.get("reply_markup")]

    await eventually(lambda: len(texts("Approved by @alice")) == INCIDENTS, timeout=40)

    async def executed() -> bool:  # the dry run of each approved command has finished
        bodies = [await api(replicas[0], f"/api/incidents/{ref}") for ref in refs]
        return all(b["executions"] and b["executions"][0]["state"] == "succeeded" for b in bodies)

    await eventually(executed, timeout=40)
    await asyncio.sleep(2.0)  # anything doubled would have arrived by now
    assert len(texts("Approved by @alice")) == INCIDENTS
    assert len(bot_api.calls("answerCallbackQuery")) == INCIDENTS
    assert {ref: len(card_sends(bot_api, ref)) for ref in refs} == dict.fromkeys(refs, 1)
    for ref in refs:
        body = await api(replicas[0], f"/api/incidents/{ref}")
        assert len(body["executions"]) == 1, body["executions"]
    assert len(bot_api.calls("setWebhook")) == 2 and bot_api.calls("getUpdates") == []
