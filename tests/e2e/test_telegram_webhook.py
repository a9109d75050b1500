"""Telegram webhook mode (issue 8): the app registers its webhook with the secret, refuses posts without it,
acknowledges at once and processes in the background, once per update_id, and never loses an acknowledged
update (a process that dies before processing one has it processed at the next start). And polling mode:
one process at a time, a second one standing by with a clear message."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from bot.polling import LEASE
from handlers.http.telegram import TELEGRAM_WEBHOOK
from services.leases import JobLeases, holder_gone, process_owner
from storage.clock import utcnow
from storage.db import Database
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    CHAT_ID,
    VIEWER,
    AppUnderTest,
    app_settings,
    eventually,
    fixture,
    start_app,
)

SECRET = "s3cret_webhook-token"
URL = "https://alertpilot.example.com/telegram/webhook"


def webhook_settings(tmp_path: Path, bot_api: FakeBotAPI, **overrides: Any) -> Any:
    return app_settings(tmp_path, bot_api=bot_api.base_url, telegram_mode="webhook", telegram_webhook_url=URL,
                        telegram_webhook_secret=SECRET, **overrides)


async def post_update(app: AppUnderTest, update: dict[str, Any] | bytes, secret: str | None = SECRET) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    if isinstance(update, bytes):
        return await app.http.post("/telegram/webhook", content=update, headers=headers)
    return await app.http.post("/telegram/webhook", json=update, headers=headers)


def replies(bot_api: FakeBotAPI, needle: str) -> list[dict[str, Any]]:
    return [m for m in bot_api.sent_messages() if needle in m["text"]]


@pytest.fixture
async def hooked(tmp_path: Path, bot_api: FakeBotAPI) -> Any:
    app = await start_app(webhook_settings(tmp_path, bot_api))
    try:
        await bot_api.wait_for("setWebhook")
        yield app
    finally:
        await app.stop()


async def test_the_app_registers_its_webhook_with_the_secret_and_does_not_poll(
    hooked: AppUnderTest, bot_api: FakeBotAPI
) -> None:
    [call] = bot_api.calls("setWebhook")
    assert call.params["url"] == URL and call.params["secret_token"] == SECRET
    assert "callback_query" in call.params["allowed_updates"] and "message" in call.params["allowed_updates"]
    health = (await hooked.http.get("/healthz")).json()
    assert health["telegram"] == "webhook"
    await asyncio.sleep(0.3)
    assert bot_api.calls("getUpdates") == [] and bot_api.calls("deleteWebhook") == []


async def test_a_post_without_the_right_secret_is_refused_and_not_processed(
    hooked: AppUnderTest, bot_api: FakeBotAPI
) -> None:
    update = bot_api.inject_message(CHAT_ID, VIEWER, "/help")
    for secret in (None, "", "wrong", SECRET + "x"):
        refused = await post_update(hooked, update, secret=secret)
        assert refused.status_code == 401
        assert "X-Telegram-Bot-Api-Secret-Token" in refused.json()["error"]
    await asyncio.sleep(0.3)
    assert replies(bot_api, "/incidents") == []
    async with hooked.deps.db.read() as tx:
        assert await tx.telegram_updates.get(update["update_id"]) is None


async def test_an_update_is_acknowledged_processed_once_and_a_redelivery_is_recognised(
    hooked: AppUnderTest, bot_api: FakeBotAPI
) -> None:
    update = bot_api.inject_message(CHAT_ID, VIEWER, "/help")
    first = await post_update(hooked, update)
    assert first.status_code == 200 and first.json() == {"ok": True}
    await eventually(lambda: replies(bot_api, "/incidents"))
    # Telegram did not see the 200 in time and posts it again, here and (behind a load balancer) elsewhere
    again = await asyncio.gather(*(post_update(hooked, update) for _ in range(3)))
    assert all(r.status_code == 200 and r.json() == {"ok": True, "duplicate": True} for r in again)
    await asyncio.sleep(0.5)
    assert len(replies(bot_api, "/incidents")) == 1
    async with hooked.deps.db.read() as tx:
        stored = await tx.telegram_updates.get(update["update_id"])
    assert stored is not None and stored.done_at is not None and stored.error is None


async def test_a_button_press_by_webhook_approves_once(hooked: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await hooked.post_alerts(fixture("01-firing-one-alert.json"))
    [card] = await eventually(lambda: [m for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup")])
    approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    press = bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], approve, username="alice")
    answers = await asyncio.gather(*(post_update(hooked, press) for _ in range(4)))
    assert sorted(r.json().get("duplicate", False) for r in answers) == [False, True, True, True]
    await bot_api.wait_for("answerCallbackQuery")
    await eventually(lambda: replies(bot_api, "Approved by @alice"))
    await asyncio.sleep(0.5)
    assert len(bot_api.calls("answerCallbackQuery")) == 1
    assert len(replies(bot_api, "Approved by @alice")) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "the body is not JSON"),
        (b"[1, 2]", "an update is a JSON object, not list"),
        (b'{"message": {}}', "update_id: a non-negative integer is required"),
        (b'{"update_id": "7"}', "update_id: a non-negative integer is required"),
        (b'{"update_id": true}', "update_id: a non-negative integer is required"),
        (b'{"update_id": -1}', "update_id: a non-negative integer is required"),
        (b'{"update_id": 99999999999999999999}', "update_id: a non-negative integer is required"),
        (b'{"update_id": 5, "message": {"text": "hi"}}', "not a Telegram update: message.message_id"),
        (b'{"update_id": 5, "callback_query": 3}', "not a Telegram update: callback_query"),
        (b'{"update_id": NaN}', "the body is not JSON"),
    ],
)
async def test_a_body_that_is_not_an_update_gets_400_with_the_reason(
    hooked: AppUnderTest, body: bytes, reason: str
) -> None:
    answer = await post_update(hooked, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(reason)


async def test_without_webhook_mode_the_endpoint_says_how_to_turn_it_on(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
    try:
        answer = await post_update(app, {"update_id": 1}, secret="anything")
        assert answer.status_code == 404 and "ALERTPILOT_TELEGRAM_MODE=webhook" in answer.json()["error"]
    finally:
        await app.stop()


async def test_an_acknowledged_update_a_dead_process_left_is_processed_at_the_next_start(
    tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    settings = webhook_settings(tmp_path, bot_api)
    app = await start_app(settings)
    await app.stop()  # the schema exists now
    update = bot_api.inject_message(CHAT_ID, VIEWER, "/help")
    db = Database(settings.database_url)
    try:  # what a process killed between the 200 and processing leaves behind
        async with db.write() as tx:
            assert await tx.telegram_updates.add(update["update_id"], update, "gone-host-4242-abcdef", utcnow())
    finally:
        await db.dispose()
    app = await start_app(settings)
    try:
        await eventually(lambda: replies(bot_api, "/incidents"))
        async with app.deps.db.read() as tx:
            stored = await tx.telegram_updates.get(update["update_id"])
        assert stored is not None and stored.done_at is not None
        assert (await post_update(app, update)).json()["duplicate"] is True
    finally:
        await app.stop()


async def test_a_replica_takes_over_an_update_whose_receiver_went_quiet(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start_app(webhook_settings(tmp_path, bot_api))
    try:
        update = bot_api.inject_message(CHAT_ID, VIEWER, "/help")
        stale = datetime.now(UTC) - timedelta(minutes=5)
        async with app.deps.db.write() as tx:  # claimed by another replica five minutes ago, never finished
            assert await tx.telegram_updates.add(update["update_id"], update, "elsewhere-1-abcdef", stale)
        inbox = app.app[TELEGRAM_WEBHOOK].inbox
        taken = await inbox.claim_abandoned()
        assert [u for u, _ in taken] == [update["update_id"]]
        assert await inbox.claim_abandoned() == []  # now this replica's
    finally:
        await app.stop()


async def test_polling_runs_in_one_process_and_a_second_stands_by_with_a_clear_message(
    tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    first = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
    second: AppUnderTest | None = None
    try:
        await bot_api.wait_for("getUpdates")
        with structlog.testing.capture_logs() as logs:
            second = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
            await eventually(lambda: any(e["event"] == "telegram_polling_refused" for e in logs))
        refusal = next(e for e in logs if e["event"] == "telegram_polling_refused")
        assert "only one process may poll" in refusal["message"]
        assert "ALERTPILOT_TELEGRAM_MODE=webhook" in refusal["message"]
        health = (await second.http.get("/healthz")).json()
        assert health["telegram"].startswith("standby: polling is held by")
        assert (await first.http.get("/healthz")).json()["telegram"] == "polling"
        # one poller: every update is answered once
        bot_api.inject_message(CHAT_ID, VIEWER, "/help")
        await eventually(lambda: replies(bot_api, "/incidents"))
        await asyncio.sleep(0.5)
        assert len(replies(bot_api, "/incidents")) == 1
    finally:
        if second is not None:
            await second.stop()
        await first.stop()


async def test_a_stopped_poller_hands_the_lease_over(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/lease.db")
    try:
        await db.create_schema()
        holder, standby = JobLeases(db, utcnow, process_owner()), JobLeases(db, utcnow, process_owner())
        assert await holder.acquire(LEASE, timedelta(seconds=30))
        assert not await standby.acquire(LEASE, timedelta(seconds=30))
        await holder.release(LEASE)
        assert await standby.acquire(LEASE, timedelta(seconds=30))
        # a holder on this host whose process is gone is taken over before its lease expires
        dead = f"{process_owner().rsplit('-', 2)[0]}-{2**22 + 12345}-abcdef"
        assert holder_gone(dead) and not holder_gone(process_owner()) and not holder_gone("other-host-1-abcdef")
        assert await holder.take_over(LEASE, standby.owner, timedelta(seconds=30))
        assert (await holder.get(LEASE)).owner == holder.owner  # type: ignore[union-attr]
    finally:
        await db.dispose()
