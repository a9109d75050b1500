"""Faults (issue 8): Telegram answering 5xx or timing out for a long while. The real app runs in-process against
the fake Bot API; while the card chat is unreachable a whole story happens (alerts fire, a second alert joins,
INC-1 is approved and its dry run runs, incidents resolve, more incidents open). Once Telegram recovers every
message the story queued arrives exactly once, threaded under its card, in the order the events happened.

"For minutes" is kept short in real time but long relative to the outbox's backoff: the cap is 0.5 s here, and
the outage lasts until the chat's oldest message was refused many more times after the story, so it spans many
backoff cycles (the younger messages wait behind that one rather than each backing off on its own schedule)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiogram.client.session.aiohttp import AiohttpSession
from sqlmodel import select

import bot.app
from storage.tables import Outbox, OutboxKind, OutboxState
from tests.fakes.botapi import FakeBotAPI, Request
from tests.harness import (
    APPROVER,
    CHAT_ID,
    AppUnderTest,
    alertmanager_payload,
    app_settings,
    eventually,
    start_app,
)

MAX_BACKOFF = 0.5  # the outbox's cap on exponential backoff (ALERTPILOT_OUTBOX_MAX_BACKOFF_SECONDS)
CLIENT_TIMEOUT = 1  # the Bot API client's timeout in the timeout variant (the app's is 30 s)


async def incident(app: AppUnderTest, ref: str) -> dict[str, Any]:
    response = await app.get(f"/api/incidents/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


async def post(app: AppUnderTest, payload: dict[str, Any]) -> list[str]:
    response = await app.post_alerts(payload)
    assert response.status_code == 200, response.text
    return response.json()["incidents"]


async def story(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    """Everything that happens to the card chat while Telegram is down."""
    assert await post(app, alertmanager_payload("DiskFull", {"db-1": "firing"})) == ["INC-1"]
    await eventually(lambda: _decided(app, "INC-1"))  # analysed (rules): the card is due now
    assert await post(app, alertmanager_payload("DiskFull", {"db-1": "firing", "db-2": "firing"})) == ["INC-1"]  # joins
    assert await post(app, alertmanager_payload("MemHigh", {"db-1": "firing"})) == ["INC-2"]
    bot_api.inject_message(CHAT_ID, APPROVER, "/approve INC-1", username="alice")
    await eventually(lambda: _executed(app, "INC-1"), timeout=15)  # the dry run ran; its replies are queued
    assert await post(app, alertmanager_payload("CpuHigh", {"db-3": "firing"})) == ["INC-3"]
    assert await post(app, alertmanager_payload("DiskFull", {"db-1": "resolved", "db-2": "firing"})) == ["INC-1"]
    assert await post(app, alertmanager_payload("DiskFull", {"db-2": "resolved"})) == ["INC-1"]  # INC-1 resolved
    assert await post(app, alertmanager_payload("MemHigh", {"db-1": "resolved"})) == ["INC-2"]


async def _decided(app: AppUnderTest, ref: str) -> bool:
    return (await incident(app, ref)).get("decision") is not None


async def _executed(app: AppUnderTest, ref: str) -> bool:
    body = await incident(app, ref)
    return bool(body["executions"]) and body["executions"][0]["state"] not in ("queued", "running")


async def outbox_rows(app: AppUnderTest) -> list[Outbox]:
    async with app.deps.db.read() as tx:
        return list((await tx.session.execute(select(Outbox).order_by(Outbox.id))).scalars())


async def drained(app: AppUnderTest) -> bool:
    return all(r.state in (OutboxState.SENT, OutboxState.COALESCED) for r in await outbox_rows(app))


def delivered(bot_api: FakeBotAPI) -> list[Request]:
    """The card chat's sends and edits that Telegram took, in arrival order ("not modified" counts: the card
    already showed that state)."""
    return [
        r for r in bot_api.calls()
        if r.method in ("sendMessage", "editMessageText") and r.params.get("chat_id") == CHAT_ID
        and (r.status == 200 or (r.status == 400 and "not modified" in r.response["description"]))
    ]


def refused(bot_api: FakeBotAPI, method: str) -> int:
    return sum(1 for r in bot_api.calls(method) if r.params.get("chat_id") == CHAT_ID and r.status != 200)


async def check_delivery(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    rows = [r for r in await outbox_rows(app) if r.chat_id == str(CHAT_ID)]
    assert {r.state for r in rows} <= {OutboxState.SENT, OutboxState.COALESCED}, [(r.id, r.state, r.last_error) for r in rows]
    sent = sorted((r for r in rows if r.state == OutboxState.SENT), key=lambda r: (r.sent_at, r.id))

    # what the app says it sent, in the order it sent it, is exactly what Telegram received, in that order
    expected: list[tuple[str, str]] = []
    cards: dict[int, str] = {}
    for row in sent:
        assert row.message_id is not None
        if row.kind == OutboxKind.CARD and row.incident_id in cards:
            assert row.message_id == cards[row.incident_id], "a card moved: it was sent again instead of edited"
            expected.append(("editMessageText", row.message_id))
        else:
            if row.kind == OutboxKind.CARD:
                cards[row.incident_id or 0] = row.message_id
            expected.append(("sendMessage", row.message_id))
    received = [
        (r.method, str(r.response["result"]["message_id"] if r.method == "sendMessage" else r.params["message_id"]))
        for r in delivered(bot_api)
    ]
    assert received == expected, "\n" + bot_api.dump_requests(60)
    assert len({mid for method, mid in received if method == "sendMessage"}) == len(
        [m for m in received if m[0] == "sendMessage"]
    )  # no message sent twice

    # in the order the events happened: rows are written with the change that caused them (ids in event order)
    for incident_id in {r.incident_id for r in sent}:
        ids = [r.id for r in sent if r.incident_id == incident_id]
        assert ids == sorted(ids), f"INC-{incident_id}: rows sent out of order {ids}"
    ids = [r.id for r in sent]
    assert ids == sorted(ids), f"the chat's rows were sent out of order: {ids}"

    # one card per incident; every other message is a reply threaded under its incident's card
    assert sorted(cards) == [1, 2, 3]
    messages = {str(m["message_id"]): m for m in bot_api.sent_messages(CHAT_ID)}
    assert len(messages) == len(cards) + sum(1 for r in sent if r.kind == OutboxKind.MESSAGE)
    for row in sent:
        if row.kind == OutboxKind.MESSAGE:
            reply = messages[row.message_id]["reply_parameters"] or {}
            assert row.incident_id is not None and reply.get("message_id") == int(cards[row.incident_id]), row

    # and what the chat reads, incident by incident
    def thread(ref_id: int) -> list[str]:
        card = int(cards[ref_id])
        return [m["plain_text"] for m in messages.values()
                if (m["reply_parameters"] or {}).get("message_id") == card]

    inc1 = thread(1)
    markers = ["Approved by @alice", "Would run", "complete", "Resolved"]
    positions = [next((i for i, text in enumerate(inc1) if marker.lower() in text.lower()), -1) for marker in markers]
    assert -1 not in positions and positions == sorted(positions), inc1
    assert any("resolved" in text.lower() for text in thread(2)), thread(2)
    final = {ref_id: messages[mid]["plain_text"] for ref_id, mid in cards.items()}
    assert "INC-1" in final[1] and "2 alerts" in final[1] and "DRY RUN done" in final[1], final[1]


@pytest.fixture
async def fragile_app(tmp_path: Path, bot_api: FakeBotAPI) -> AsyncIterator[AppUnderTest]:
    running = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url, outbox_max_backoff_seconds=MAX_BACKOFF))
    await bot_api.wait_for("getUpdates")
    try:
        yield running
    finally:
        await running.stop()


async def outage(bot_api: FakeBotAPI, *, cycles: int) -> None:
    """Keep Telegram down until the first card was refused ``cycles`` more times (many backoff periods)."""
    before = refused(bot_api, "sendMessage")
    await eventually(lambda: refused(bot_api, "sendMessage") >= before + cycles, timeout=cycles * MAX_BACKOFF * 4 + 5)


async def test_telegram_5xx_for_a_long_while_then_everything_arrives_once_in_order(
    fragile_app: AppUnderTest, bot_api: FakeBotAPI
) -> None:
    app = fragile_app
    bot_api.block_chat(CHAT_ID, status=502, description="Bad Gateway")
    await story(app, bot_api)
    await outage(bot_api, cycles=8)
    assert delivered(bot_api) == []
    bot_api.unblock_chat(CHAT_ID)
    await eventually(lambda: drained(app), timeout=20)
    await asyncio.sleep(0.3)  # nothing more trickles in afterwards
    await check_delivery(app, bot_api)


@pytest.fixture
def short_client_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's Bot API session with a 1 s timeout instead of 30 s, so that a hanging Telegram times out fast."""
    real: Callable[..., AiohttpSession] = AiohttpSession
    monkeypatch.setattr(bot.app, "AiohttpSession", lambda **kwargs: real(**{**kwargs, "timeout": CLIENT_TIMEOUT}))


async def test_telegram_timing_out_then_down_then_back_delivers_everything_once_in_order(
    short_client_timeout: None, tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    """Telegram hangs (the first sends get no answer within the client's timeout; nothing was processed: the chat
    is unreachable), then answers 502 for a while, then recovers."""
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url, outbox_max_backoff_seconds=MAX_BACKOFF))
    try:
        await bot_api.wait_for("getUpdates")
        bot_api.block_chat(CHAT_ID, status=502, description="Bad Gateway")
        bot_api.delay_next("sendMessage", CLIENT_TIMEOUT + 3, times=4)  # answered far too late: a timeout
        await story(app, bot_api)
        await eventually(lambda: refused(bot_api, "sendMessage") >= 4, timeout=15)  # the hanging ones are used up
        hanging = [r.at for r in bot_api.calls("sendMessage")[:4]]
        gaps = [later - earlier for earlier, later in zip(hanging, hanging[1:], strict=False)]
        # the sender gave up on each after its client timeout, without waiting for the (late) answer
        assert all(CLIENT_TIMEOUT * 0.9 <= gap < CLIENT_TIMEOUT + 2 for gap in gaps), gaps
        await outage(bot_api, cycles=4)
        bot_api.unblock_chat(CHAT_ID)
        await eventually(lambda: drained(app), timeout=20)
        await asyncio.sleep(0.3)
        await check_delivery(app, bot_api)
    finally:
        await app.stop()

