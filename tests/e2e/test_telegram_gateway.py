"""TelegramGateway against the fake Bot API: Telegram's answers become the outbox's delivery errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

from bot.chat.telegram import TelegramGateway
from bot.render import Renderer
from services.errors import (
    MessageGone,
    PermanentDeliveryError,
    RateLimited,
    TransientDeliveryError,
)
from services.ports import CardAction, IncidentCard
from tests.fakes.botapi import FakeBotAPI
from tests.harness import BOT_TOKEN, CHAT_ID

CHAT = str(CHAT_ID)


def card(**changes: object) -> IncidentCard:
    values: dict[str, object] = dict(
        incident_id=7, ref="INC-7", status="firing", severity="critical", priority="P1", title="DiskFull",
        service="db", namespace="prod", summary="Disk <almost> full & \"hot\"", alert_count=1, firing_count=1,
        repeat_count=0, since=datetime(2026, 11, 24, 0, 30, tzinfo=UTC), resolved_at=None, duration_minutes=None,
        analysing=True, proposal=None, actions=(CardAction.DETAILS, CardAction.HISTORY),
    )
    values.update(changes)
    return IncidentCard(**values)  # type: ignore[arg-type]


@pytest.fixture
async def gateway(bot_api: FakeBotAPI) -> AsyncIterator[TelegramGateway]:
    bot = Bot(BOT_TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(bot_api.base_url)))
    try:
        yield TelegramGateway(bot, Renderer(ZoneInfo("Asia/Taipei")))
    finally:
        await bot.session.close()


async def test_gateway_sends_escaped_card_and_edits_in_place(gateway: TelegramGateway, bot_api: FakeBotAPI) -> None:
    message_id = await gateway.send_card(CHAT, card(), edit_message_id=None)
    stored = bot_api.messages[CHAT_ID][int(message_id)]
    assert "Disk &lt;almost&gt; full &amp; &#34;hot&#34;" in stored["text"]
    assert "Disk <almost> full & \"hot\"" in stored["plain_text"]
    assert "08:30" in stored["plain_text"]  # Asia/Taipei
    assert await gateway.send_card(CHAT, card(alert_count=2), edit_message_id=message_id) == message_id
    assert "2 alerts" in bot_api.messages[CHAT_ID][int(message_id)]["plain_text"]


async def test_gateway_not_modified_is_success(gateway: TelegramGateway, bot_api: FakeBotAPI) -> None:
    message_id = await gateway.send_card(CHAT, card(), edit_message_id=None)
    assert await gateway.send_card(CHAT, card(), edit_message_id=message_id) == message_id
    [edit] = bot_api.calls("editMessageText")
    assert edit.status == 400  # Telegram said "message is not modified"; the gateway calls that done


async def test_gateway_maps_telegram_errors(gateway: TelegramGateway, bot_api: FakeBotAPI) -> None:
    message_id = await gateway.send_card(CHAT, card(), edit_message_id=None)
    bot_api.delete_message(CHAT_ID, int(message_id))
    with pytest.raises(MessageGone):
        await gateway.send_card(CHAT, card(alert_count=3), edit_message_id=message_id)
    bot_api.fail_next("sendMessage", status=429, retry_after=9)
    with pytest.raises(RateLimited) as limited:
        await gateway.send_message(CHAT, "help", {}, reply_to=None)
    assert limited.value.retry_after == 9
    bot_api.fail_next("sendMessage", status=502)
    with pytest.raises(TransientDeliveryError):
        await gateway.send_message(CHAT, "help", {}, reply_to=None)
    bot_api.block_chat(CHAT_ID)
    with pytest.raises(PermanentDeliveryError, match="kicked"):
        await gateway.send_message(CHAT, "help", {}, reply_to=None)


async def test_gateway_reply_survives_a_deleted_parent(gateway: TelegramGateway, bot_api: FakeBotAPI) -> None:
    parent = await gateway.send_card(CHAT, card(), edit_message_id=None)
    bot_api.delete_message(CHAT_ID, int(parent))
    reply = await gateway.send_message(CHAT, "resolved", {"ref": "INC-7", "minutes": 3, "at": None}, reply_to=parent)
    assert "INC-7 resolved after 3 min" in bot_api.messages[CHAT_ID][int(reply)]["plain_text"]


async def test_gateway_names_the_new_chat_id_when_a_group_became_a_supergroup(
    gateway: TelegramGateway, bot_api: FakeBotAPI
) -> None:
    bot_api.fail_next(
        "sendMessage",
        status=400,
        migrate_to_chat_id=-1009999,
        description="Bad Request: group chat was upgraded to a supergroup chat",
    )
    with pytest.raises(PermanentDeliveryError, match="ALERTPILOT_TELEGRAM_CHAT_ID=-1009999"):
        await gateway.send_message(CHAT, "help", {}, reply_to=None)
