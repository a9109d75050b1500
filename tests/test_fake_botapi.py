"""Tests for tests/fakes/botapi.py, driven through a real aiogram Bot."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
)

from tests.fakes.botapi import EntityParseError, FakeBotAPI, parse_telegram_html

TOKEN = "123:ABC"
CHAT = -100500
USER = 42


@pytest.fixture
async def fake():
    async with FakeBotAPI(token=TOKEN, bot_username="alertpilot_bot") as server:
        yield server


@pytest.fixture
async def bot(fake):
    b = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))
    try:
        yield b
    finally:
        await b.session.close()


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d) for t, d in pairs]]
    )


async def test_get_me(bot, fake):
    me = await bot.get_me()
    assert me.id == 123
    assert me.is_bot is True
    assert me.username == "alertpilot_bot"
    assert [r.method for r in fake.requests] == ["getMe"]


async def test_wrong_token_is_unauthorized(fake):
    other = Bot("999:WRONG", session=AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url)))
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await other.get_me()
    finally:
        await other.session.close()


async def test_unknown_method_fails_loudly(bot, fake):
    with pytest.raises(TelegramNotFound, match="method not found"):
        await bot.get_chat(CHAT)
    assert fake.calls("getChat")[0].status == 404


async def test_send_message_html_keyboard_reply(bot, fake):
    first = await bot.send_message(CHAT, "first")
    assert first.message_id == 1
    msg = await bot.send_message(
        CHAT,
        "<b>FIRING</b> disk &lt;90%&gt; on <code>db-1</code>",
        parse_mode="HTML",
        reply_markup=keyboard(("Ack", "ack:1"), ("Silence", "sil:1")),
        reply_parameters=ReplyParameters(message_id=first.message_id),
    )
    assert msg.message_id == 2
    assert msg.chat.type == "supergroup"
    assert msg.from_user.id == 123
    assert msg.text == "FIRING disk <90%> on db-1"
    assert [(e.type, e.offset, e.length) for e in msg.entities] == [("bold", 0, 6), ("code", 21, 4)]
    assert msg.html_text == "<b>FIRING</b> disk &lt;90%&gt; on <code>db-1</code>"
    assert msg.reply_to_message.message_id == 1
    assert msg.reply_markup.inline_keyboard[0][1].callback_data == "sil:1"

    req = fake.calls("sendMessage")[1]
    assert req.params["chat_id"] == CHAT
    assert req.params["parse_mode"] == "HTML"
    assert req.params["reply_markup"]["inline_keyboard"][0][0] == {"text": "Ack", "callback_data": "ack:1"}
    assert req.params["reply_parameters"] == {"message_id": 1}

    stored = fake.messages[CHAT][2]
    assert stored["text"] == "<b>FIRING</b> disk &lt;90%&gt; on <code>db-1</code>"
    assert stored["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ack:1"
    assert [m["message_id"] for m in fake.sent_messages(CHAT)] == [1, 2]
    assert fake.sent_messages(777) == []

    private = await bot.send_message(USER, "hi")
    assert private.chat.type == "private"
    assert private.message_id == 1  # per-chat counter


async def test_reply_to_missing_message(bot, fake):
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(CHAT, "x", reply_parameters=ReplyParameters(message_id=99))
    ok = await bot.send_message(
        CHAT, "x", reply_parameters=ReplyParameters(message_id=99, allow_sending_without_reply=True)
    )
    assert ok.reply_to_message is None


async def test_edit_not_modified(bot, fake):
    kb = keyboard(("Ack", "ack:1"))
    msg = await bot.send_message(CHAT, "<b>hi</b>", parse_mode="HTML", reply_markup=kb)
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            chat_id=CHAT, message_id=msg.message_id, text="<b>hi</b>", parse_mode="HTML", reply_markup=kb
        )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=CHAT, message_id=msg.message_id, reply_markup=kb)

    # Same text but without reply_markup removes the keyboard: that is a modification.
    edited = await bot.edit_message_text(
        chat_id=CHAT, message_id=msg.message_id, text="<b>hi</b>", parse_mode="HTML"
    )
    assert edited.reply_markup is None
    assert edited.edit_date is not None
    assert fake.messages[CHAT][msg.message_id]["reply_markup"] is None
    assert len(fake.messages[CHAT][msg.message_id]["edit_history"]) == 1

    edited = await bot.edit_message_text(
        chat_id=CHAT, message_id=msg.message_id, text="<i>resolved</i>", parse_mode="HTML"
    )
    assert edited.text == "resolved"
    assert fake.sent_messages()[0]["text"] == "<i>resolved</i>"


async def test_retry_after(bot, fake):
    fake.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as exc_info:
        await bot.send_message(CHAT, "x")
    assert exc_info.value.retry_after == 7
    assert "retry after 7" in str(exc_info.value)
    assert fake.sent_messages() == []
    # Only the next call fails.
    msg = await bot.send_message(CHAT, "x")
    assert msg.message_id == 1
    assert [r.status for r in fake.calls("sendMessage")] == [429, 200]


async def test_server_error(bot, fake):
    fake.fail_next("editMessageText", status=500, times=2)
    fake.fail_next("sendMessage", status=502)
    with pytest.raises(TelegramServerError):
        await bot.send_message(CHAT, "x")
    msg = await bot.send_message(CHAT, "x")
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.edit_message_text(chat_id=CHAT, message_id=msg.message_id, text="y")
    await bot.edit_message_text(chat_id=CHAT, message_id=msg.message_id, text="y")


async def test_delay_next_times_out_but_message_is_sent(bot, fake):
    from aiogram.exceptions import TelegramNetworkError

    fake.delay_next("sendMessage", 1.5)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "slow", request_timeout=0.3)
    assert [m["text"] for m in fake.sent_messages()] == ["slow"]


async def test_message_too_long(bot, fake):
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    # Limit is applied after entity parsing: markup and escapes do not count.
    body = "&lt;" * 4000 + "<b>" + "y" * 96 + "</b>"
    msg = await bot.send_message(CHAT, body, parse_mode="HTML")
    assert len(msg.text) == 4096
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(CHAT, body + "z", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.edit_message_text(chat_id=CHAT, message_id=msg.message_id, text="q" * 4097)


@pytest.mark.parametrize(
    "text",
    ["<b>unclosed", "<div>x</div>", "a < b", "fish & chips", "<b><i>x</b></i>", "&nbsp;", "<span>x</span>", "x</b>"],
)
async def test_invalid_html(bot, fake, text):
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(CHAT, text, parse_mode="HTML")
    # Without parse_mode the same text is fine.
    await bot.send_message(CHAT, text)


def test_html_parser_entities():
    plain, entities = parse_telegram_html(
        '😀 <a href="https://x.io/?a=1&amp;b=2">link</a> <pre><code class="language-py">x</code></pre>'
        '<tg-spoiler>s</tg-spoiler><span class="tg-spoiler">t</span><blockquote expandable>q</blockquote>&#65;&#x42;'
    )
    assert plain == "😀 link xstqAB"
    assert entities == [
        {"type": "text_link", "url": "https://x.io/?a=1&b=2", "offset": 3, "length": 4},
        {"type": "pre", "language": "py", "offset": 8, "length": 1},
        {"type": "spoiler", "offset": 9, "length": 1},
        {"type": "spoiler", "offset": 10, "length": 1},
        {"type": "expandable_blockquote", "offset": 11, "length": 1},
    ]
    with pytest.raises(EntityParseError):
        parse_telegram_html("<br>")


async def test_callback_data_too_long(bot, fake):
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(CHAT, "x", reply_markup=keyboard(("Ack", "a" * 65)))
    await bot.send_message(CHAT, "x", reply_markup=keyboard(("Ack", "a" * 64)))


async def test_inject_message_and_get_updates(bot, fake):
    update = fake.inject_message(CHAT, USER, "/ack@alertpilot_bot INC-7", username="alice")
    assert update["update_id"] == 1
    updates = await bot.get_updates(offset=0, timeout=1)
    assert len(updates) == 1
    message = updates[0].message
    assert message.text == "/ack@alertpilot_bot INC-7"
    assert message.chat.type == "supergroup"
    assert message.from_user.username == "alice"
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 19)]

    # Not confirmed yet: returned again; confirmed by offset: dropped.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [1]
    assert await bot.get_updates(offset=2, timeout=0) == []
    assert fake.updates == []

    # Bot can reply to the user's message (shared per-chat message ids).
    reply = await bot.send_message(CHAT, "ok", reply_parameters=ReplyParameters(message_id=message.message_id))
    assert reply.message_id == message.message_id + 1
    assert reply.reply_to_message.from_user.id == USER

    # Long poll wakes up as soon as an update is injected.
    async def inject_later():
        await asyncio.sleep(0.2)
        fake.inject_message(USER, USER, "hello")

    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(inject_later())
    updates = await bot.get_updates(offset=2, timeout=10)
    await task
    assert [u.update_id for u in updates] == [2]
    assert updates[0].message.chat.type == "private"
    assert updates[0].message.entities is None
    assert loop.time() - started < 1.5

    # Empty long poll returns after at most max_poll_wait (2s), not the requested 10s.
    started = loop.time()
    assert await bot.get_updates(offset=3, timeout=10) == []
    assert 1.5 < loop.time() - started < 3.5


async def test_inject_callback_and_answer(bot, fake):
    msg = await bot.send_message(CHAT, "alert", reply_markup=keyboard(("Ack", "ack:9")))
    fake.inject_callback(CHAT, USER, msg.message_id, "ack:9", username="bob")
    [update] = await bot.get_updates(timeout=1)
    cq = update.callback_query
    assert cq.data == "ack:9"
    assert cq.from_user.username == "bob"
    assert cq.message.message_id == msg.message_id
    assert cq.message.reply_markup.inline_keyboard[0][0].callback_data == "ack:9"
    await bot.answer_callback_query(cq.id, text="Acked", show_alert=True)
    [answer] = fake.callback_answers(cq.id)
    assert answer["text"] == "Acked"
    assert answer["show_alert"] == "true"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("nope")


async def test_delete_message_then_edit(bot, fake):
    msg = await bot.send_message(CHAT, "alert", reply_markup=keyboard(("Ack", "ack:1")))
    fake.delete_message(CHAT, msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text(chat_id=CHAT, message_id=msg.message_id, text="new")
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_reply_markup(chat_id=CHAT, message_id=msg.message_id, reply_markup=None)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(CHAT, "r", reply_parameters=ReplyParameters(message_id=msg.message_id))
    assert fake.messages[CHAT][msg.message_id]["deleted"] is True

    other = await bot.send_message(CHAT, "other")
    assert await bot.delete_message(CHAT, other.message_id) is True
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(CHAT, other.message_id)


async def test_webhook_and_commands(bot, fake):
    from aiogram.types import BotCommand

    assert await bot.set_my_commands([BotCommand(command="ack", description="Acknowledge")])
    assert [c.command for c in await bot.get_my_commands()] == ["ack"]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Ack-It", description="x")])
    assert await bot.delete_my_commands()

    assert await bot.set_webhook("https://example.com/hook")
    assert (await bot.get_webhook_info()).url == "https://example.com/hook"
    with pytest.raises(TelegramConflictError):
        await bot.get_updates(timeout=0)
    fake.inject_message(USER, USER, "queued")
    assert (await bot.get_webhook_info()).pending_update_count == 1
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert (await bot.get_webhook_info()).url == ""
    assert await bot.get_updates(timeout=0) == []


async def test_wait_for(bot, fake):
    async def later():
        await asyncio.sleep(0.1)
        await bot.send_message(CHAT, "a")
        await bot.send_message(CHAT, "b")

    task = asyncio.create_task(later())
    reqs = await fake.wait_for("sendMessage", count=2, timeout=5)
    await task
    assert [r.params["text"] for r in reqs] == ["a", "b"]
    reqs = await fake.wait_for("sendMessage", predicate=lambda r: r.params["text"] == "b")
    assert len(reqs) == 1
    with pytest.raises(AssertionError, match="waiting for 1 x editMessageText") as exc_info:
        await fake.wait_for("editMessageText", timeout=0.2)
    assert "sendMessage" in str(exc_info.value)


async def test_plain_http_param_parsing(fake):
    url = f"{fake.base_url}/bot{TOKEN}"
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/sendMessage", json={"chat_id": CHAT, "text": "[json] body", "reply_markup": markup}) as r:
            body = await r.json()
            assert body["ok"] and body["result"]["reply_markup"] == markup
        async with http.post(
            f"{url}/sendmessage", data={"chat_id": str(CHAT), "text": "[1, 2]", "reply_markup": json.dumps(markup)}
        ) as r:
            assert r.status == 200
        async with http.get(f"{url}/getMe?x=1") as r:
            assert (await r.json())["result"]["username"] == "alertpilot_bot"
        async with http.get(f"{fake.base_url}/file/bot{TOKEN}/photos/1.jpg") as r:
            assert r.status == 404
    first, second = fake.calls("sendMessage")
    assert first.params["text"] == "[json] body"
    assert second.params == {"chat_id": CHAT, "text": "[1, 2]", "reply_markup": markup}


async def test_concurrent_get_updates_conflict(bot, fake):
    first = asyncio.create_task(bot.get_updates(offset=1, timeout=10))
    await fake.wait_for("getUpdates")
    second = asyncio.create_task(bot.get_updates(offset=1, timeout=1))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await first
    assert await second == []


async def test_dispatcher_polling_end_to_end(bot, fake):
    from aiogram import Dispatcher, F, Router
    from aiogram.filters import Command
    from aiogram.types import CallbackQuery, Message

    router = Router()

    @router.message(Command("start"))
    async def on_start(message: Message) -> None:
        await message.answer("<b>Welcome</b>", parse_mode="HTML", reply_markup=keyboard(("Go", "go")))

    @router.callback_query(F.data == "go")
    async def on_go(query: CallbackQuery) -> None:
        await query.message.edit_text("Gone")
        await query.answer("done")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    try:
        await fake.wait_for("getUpdates")
        fake.inject_message(CHAT, USER, "/start@alertpilot_bot")
        [req] = await fake.wait_for("sendMessage")
        assert req.params["text"] == "<b>Welcome</b>"
        sent = fake.sent_messages(CHAT)[0]
        fake.inject_callback(CHAT, USER, sent["message_id"], "go")
        await fake.wait_for("answerCallbackQuery")
        assert fake.messages[CHAT][sent["message_id"]]["text"] == "Gone"
        assert fake.messages[CHAT][sent["message_id"]]["reply_markup"] is None
        assert fake.callback_answers()[0]["text"] == "done"
        allowed = fake.calls("getUpdates")[0].params["allowed_updates"]
        assert set(allowed) == {"message", "callback_query"}
    finally:
        await dp.stop_polling()
        await polling
