"""End to end: getting started with alertpilot — /whoami, /chatid, /start in private, /help by role, and the
first-run note when the bot is added to a group — on Telegram (the fake Bot API) and on WeCom (the encrypted
AI-bot callback)."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

import pytest

from bot.chat.wecom_crypto import WeComCrypto
from tests.e2e.test_wecom_callback_e2e import CALLBACKS, NOW, WECOM_ROLES, Clock, mention, opened, post_callback, sealed
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    CHAT_ID,
    STRANGER,
    VIEWER,
    AppUnderTest,
    app_settings,
    eventually,
    start_app,
)

NEW_GROUP = -1009876543210
FORUM = -1005555555555


def plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


async def answer_to(bot_api: FakeBotAPI, update: dict[str, Any]) -> str:
    """The plain text of alertpilot's reply to an injected message."""
    message = update["message"]
    chat_id, message_id = message["chat"]["id"], message["message_id"]
    [sent] = await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == chat_id and (
        r.params.get("reply_parameters") or {}).get("message_id") == message_id)
    return plain(sent.params["text"])


def first_runs(bot_api: FakeBotAPI, chat_id: int) -> list[dict[str, Any]]:
    return [m for m in bot_api.sent_messages(chat_id) if "does not receive incident cards yet" in m["plain_text"]]


async def settled(bot_api: FakeBotAPI, chat_id: int) -> None:
    """Every earlier update of ``chat_id`` has been handled: a /chatid sent after them has been answered."""
    await answer_to(bot_api, bot_api.inject_message(chat_id, VIEWER, "/chatid"))
    await asyncio.sleep(0.2)  # updates are handled concurrently: give an earlier one a moment more


# --- Telegram ---------------------------------------------------------------------------------------


async def test_whoami_in_the_group_and_in_private(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    group = await answer_to(bot_api, bot_api.inject_message(CHAT_ID, APPROVER, "/whoami", username="alice"))
    assert f"tg:{APPROVER}" in group and "approver" in group and "ALERTPILOT_ROLES" not in group
    private = await answer_to(bot_api, bot_api.inject_message(VIEWER, VIEWER, "/whoami@alertpilot_bot"))
    assert f"tg:{VIEWER}" in private and "viewer" in private
    unknown = await answer_to(bot_api, bot_api.inject_message(STRANGER, STRANGER, "/whoami"))
    assert f"tg:{STRANGER}" in unknown and "none" in unknown
    assert f"tg:{STRANGER}=viewer" in unknown and "ALERTPILOT_ROLES" in unknown
    in_group = await answer_to(bot_api, bot_api.inject_message(CHAT_ID, STRANGER, "/whoami"))
    assert "Members of this chat may read incidents without a role" in in_group


async def test_chatid_in_a_forum_topic_in_the_card_group_and_in_private(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    bot_api.set_chat(FORUM, is_forum=True)
    topic = await answer_to(bot_api, bot_api.inject_message(FORUM, STRANGER, "/chatid", message_thread_id=42))
    assert str(FORUM) in topic and "topic's id: 42" in topic
    assert f"ALERTPILOT_TELEGRAM_CHAT_ID={FORUM}" in topic and "does not receive incident cards" in topic
    # in an ordinary supergroup a reply carries a message_thread_id too: that is no topic
    reply = await answer_to(bot_api, bot_api.inject_message(NEW_GROUP, STRANGER, "/chatid", message_thread_id=3))
    assert str(NEW_GROUP) in reply and "topic" not in reply
    card_group = await answer_to(bot_api, bot_api.inject_message(CHAT_ID, VIEWER, "/chatid"))
    assert str(CHAT_ID) in card_group and "This chat receives incident cards" in card_group
    private = await answer_to(bot_api, bot_api.inject_message(STRANGER, STRANGER, "/chatid"))
    assert str(STRANGER) in private and "private chat" in private


async def test_first_run_is_said_once_even_across_a_restart(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    settings = app_settings(tmp_path, bot_api=bot_api.base_url)
    app = await start_app(settings)
    try:
        await bot_api.wait_for("getUpdates")
        bot_api.inject_my_chat_member(NEW_GROUP, APPROVER)  # someone adds the bot to a new group
        [note] = await eventually(lambda: first_runs(bot_api, NEW_GROUP))
        text = note["plain_text"]
        assert f"ALERTPILOT_TELEGRAM_CHAT_ID={NEW_GROUP}" in text and "/whoami" in text and "README.md" in text
        assert "my_chat_member" in (bot_api.allowed_updates or [])  # polling asks Telegram for these updates
        bot_api.inject_my_chat_member(NEW_GROUP, APPROVER, old_status="member", new_status="left")
        bot_api.inject_my_chat_member(NEW_GROUP, APPROVER, old_status="left", new_status="administrator")
        bot_api.inject_my_chat_member(CHAT_ID, APPROVER, old_status="kicked", new_status="member")  # configured
        await settled(bot_api, NEW_GROUP)
        await settled(bot_api, CHAT_ID)
    finally:
        await app.stop()
    app = await start_app(settings)  # the same database
    try:
        await bot_api.wait_for("getUpdates", count=len(bot_api.calls("getUpdates")) + 1)
        bot_api.inject_my_chat_member(NEW_GROUP, APPROVER, old_status="left", new_status="member")
        await settled(bot_api, NEW_GROUP)
        assert len(first_runs(bot_api, NEW_GROUP)) == 1
        assert first_runs(bot_api, CHAT_ID) == []
    finally:
        await app.stop()


async def test_start_in_private_explains_alertpilot(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    text = await answer_to(bot_api, bot_api.inject_message(STRANGER, STRANGER, "/start"))
    assert "incident cards" in text and "Nothing destructive runs without approval" in text
    assert f"tg:{STRANGER}" in text and "README.md" in text and f"tg:{STRANGER}=viewer" in text
    group = await answer_to(bot_api, bot_api.inject_message(CHAT_ID, APPROVER, "/start"))
    assert str(CHAT_ID) in group and "approver" in group and "Nothing destructive" not in group


async def test_help_shows_what_the_role_allows(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    viewer = await answer_to(bot_api, bot_api.inject_message(VIEWER, VIEWER, "/help"))
    approver = await answer_to(bot_api, bot_api.inject_message(APPROVER, APPROVER, "/help"))
    stranger = await answer_to(bot_api, bot_api.inject_message(STRANGER, STRANGER, "/help"))
    assert "/approve INC-12" in approver and "/reject INC-12" in approver and "/run" in approver
    assert "/approve" not in viewer and "/run" not in viewer and "/incidents" in viewer
    assert "higher role" in viewer and "/whoami" in viewer and "higher role" not in approver
    assert "/incidents" not in stranger and "/whoami" in stranger and "higher role" in stranger
    [menu] = await bot_api.wait_for("setMyCommands")
    assert {"whoami", "chatid"} <= {c["command"] for c in menu.params["commands"]}


# --- WeCom ------------------------------------------------------------------------------------------


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], CALLBACKS["receive_id"])


@pytest.fixture
async def wecom_app(tmp_path: Path) -> Any:
    settings = app_settings(
        tmp_path, roles=f"{WECOM_ROLES},wecom:wangwu=viewer", wecom_bot_token=CALLBACKS["token"],
        wecom_bot_aes_key=CALLBACKS["encoding_aes_key"],
    )
    app = await start_app(settings, clock=Clock(NOW))
    try:
        yield app
    finally:
        await app.stop()


async def ask(app: AppUnderTest, crypto: WeComCrypto, text: str, userid: str, *, single: bool = False) -> str:
    message = mention(text, userid=userid)
    if single:  # a 1:1 chat with the bot: no chatid
        message.pop("chatid", None)
        message["chattype"] = "single"
    reply = opened(crypto, await post_callback(app, *sealed(crypto, message)))
    assert reply["msgtype"] == "markdown"
    return str(reply["markdown"]["content"])


async def test_wecom_whoami_and_chatid(wecom_app: AppUnderTest, crypto: WeComCrypto) -> None:
    known = await ask(wecom_app, crypto, "@alertpilot whoami", "lisi")
    assert "`wecom:lisi`" in known and "approver" in known
    unknown = await ask(wecom_app, crypto, "@alertpilot /whoami", "mallory")
    assert "`wecom:mallory=viewer`" in unknown and "ALERTPILOT_ROLES" in unknown
    chatid = await ask(wecom_app, crypto, "@alertpilot chatid", "mallory")
    assert f"`{CALLBACKS['mention_text']['plaintext']['chatid']}`" in chatid
    assert "ALERTPILOT_WECOM_WEBHOOK_KEYS" in chatid and "No WeCom robot is configured yet" in chatid
    private = await ask(wecom_app, crypto, "chatid", "mallory", single=True)
    assert "private chat" in private and "ALERTPILOT_WECOM_WEBHOOK_KEYS" in private


async def test_wecom_help_by_role(wecom_app: AppUnderTest, crypto: WeComCrypto) -> None:
    approver = await ask(wecom_app, crypto, "@alertpilot help", "lisi")
    viewer = await ask(wecom_app, crypto, "@alertpilot help", "wangwu")
    stranger = await ask(wecom_app, crypto, "@alertpilot", "mallory")  # a bare mention is a call for help
    assert "\napprove INC-12" in approver and "\nreject INC-12" in approver and "/run" in approver
    assert "approve INC-12" not in viewer and "\nincidents" in viewer and "/run" not in viewer
    assert "higher role" in viewer and "higher role" not in approver
    assert "\nincidents" not in stranger and "\nwhoami" in stranger and "higher role" in stranger
