"""End to end: /lang on Telegram and `lang` on WeCom. Anyone sees the chat's language; an admin changes it,
the answer already comes in the new language, and it survives a restart (stored, not in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.settings import SettingsError, load_settings
from tests.e2e.test_telegram_flow import button, cards, replies_to
from tests.e2e.test_wecom_callback_e2e import CALLBACKS, NOW, Clock, crypto, mention, opened, post_callback, sealed
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.wecom import FakeWeCom
from tests.harness import APPROVER, CHAT_ID, ROLES, VIEWER, app_settings, eventually, fixture, start_app

__all__ = ["crypto"]

ADMIN = 555


async def ask(bot_api: FakeBotAPI, user: int, text: str, marker: str) -> str:
    """Send ``text`` as ``user`` in the card chat and return the bot's answer that contains ``marker``."""
    bot_api.inject_message(CHAT_ID, user, text)
    [reply] = await bot_api.wait_for("sendMessage", predicate=lambda r: marker in r.params["text"])
    return str(reply.params["text"])


async def start(tmp_path: Path, bot_api: FakeBotAPI, **overrides: Any) -> Any:
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url, roles=f"{ROLES},tg:{ADMIN}=admin", **overrides))
    await bot_api.wait_for("getUpdates")
    return app


async def test_an_admin_sets_the_chat_language_and_it_is_kept(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start(tmp_path, bot_api)
    try:
        shown = await ask(bot_api, VIEWER, "/lang", "This chat speaks")
        assert "This chat speaks English" in shown and "zh-TW" in shown and "繁體中文" in shown
        refused = await ask(bot_api, VIEWER, "/lang zh-TW", "Only an admin")
        assert "Only an admin may change this chat's language." in refused
        unknown = await ask(bot_api, ADMIN, "/lang klingon", "Not a language")
        assert "klingon" in unknown
        changed = await ask(bot_api, ADMIN, "/lang zh_tw", "此群組現在使用")
        assert "繁體中文" in changed  # the answer is already in the new language
        await ask(bot_api, VIEWER, "/lang", "此群組使用繁體中文")
        # the chat's command menu follows: its own, in Chinese; the default menu stays English
        [menu] = await bot_api.wait_for("setMyCommands", predicate=lambda r: "scope" in r.params)
        assert menu.params["scope"] == {"type": "chat", "chat_id": CHAT_ID}
        described = {c["command"]: c["description"] for c in menu.params["commands"]}
        assert described["approve"] == "核准修復建議：/approve INC-12"
        [default_menu] = [r for r in bot_api.calls("setMyCommands") if "scope" not in r.params]
        assert {c["command"]: c["description"] for c in default_menu.params["commands"]}["approve"].startswith("Approve")
    finally:
        await app.stop()

    bot_api.clear_requests()
    app = await start(tmp_path, bot_api)  # the same database: the chat's language is stored
    try:
        again = await ask(bot_api, VIEWER, "/lang", "預設為")
        assert "此群組使用繁體中文" in again and "English" in again
        # after a restart the chat gets its menu again
        [menu] = await bot_api.wait_for("setMyCommands", predicate=lambda r: "scope" in r.params)
        assert menu.params["scope"] == {"type": "chat", "chat_id": CHAT_ID}
        back = await ask(bot_api, ADMIN, "/lang default", "This chat now speaks English")
        assert back
        [gone] = await bot_api.wait_for("deleteMyCommands")  # back to the default menu
        assert gone.params["scope"] == {"type": "chat", "chat_id": CHAT_ID}
    finally:
        await app.stop()


async def test_the_configured_language_is_every_chat_default(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start(tmp_path, bot_api, language="zh-CN")
    try:
        shown = await ask(bot_api, VIEWER, "/lang", "此群组使用简体中文")
        assert "（默认为" not in shown  # the chat follows the default
    finally:
        await app.stop()


def test_an_unknown_configured_language_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="ALERTPILOT_LANGUAGE: not a language alertpilot speaks: 'fr'"):
        load_settings(language="fr")


async def test_wecom_lang(tmp_path: Path, crypto: Any) -> None:
    settings = app_settings(tmp_path, roles=f"{ROLES},wecom:lisi=admin,wecom:zhangsan=viewer",
                            wecom_bot_token=CALLBACKS["token"], wecom_bot_aes_key=CALLBACKS["encoding_aes_key"])
    app = await start_app(settings, clock=Clock(NOW))
    try:
        shown = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot lang", userid="zhangsan"))))
        assert "This chat speaks English" in shown["markdown"]["content"]
        refused = opened(crypto, await post_callback(
            app, *sealed(crypto, mention("@alertpilot lang zh-CN", userid="zhangsan"))))
        assert "Only an admin" in refused["markdown"]["content"]
        changed = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot lang zh-CN", userid="lisi"))))
        assert "此群组现在使用简体中文" in changed["markdown"]["content"]
        after = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot lang", userid="zhangsan"))))
        assert "此群组使用简体中文" in after["markdown"]["content"]
    finally:
        await app.stop()


async def test_a_chinese_chat_gets_its_cards_buttons_and_threads_in_chinese(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start(tmp_path, bot_api)
    try:
        await ask(bot_api, ADMIN, "/lang zh-TW", "此群組現在使用")
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: cards(bot_api))
        assert "根本原因" in card["text"] and "DiskFull" in card["text"]  # the data stays as it is
        labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
        assert "✅ 核准" in labels and not any("Approve" in label for label in labels)
        bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], button(card, "✅"), username="alice")
        [toast] = await bot_api.wait_for("answerCallbackQuery")
        assert "approved" not in toast.params["text"].lower()  # the answer to the press is in Chinese too
        reply = await eventually(lambda: replies_to(bot_api, card["message_id"]))
        assert "@alice" in reply[0]["text"] and "Approved" not in reply[0]["text"]
    finally:
        await app.stop()


async def test_a_robot_posts_in_the_configured_language(tmp_path: Path) -> None:
    async with FakeWeCom() as wecom:
        settings = app_settings(tmp_path, language="zh-CN", wecom_webhook_keys="robot-key-0001",
                                wecom_api_base=wecom.base_url)
        app = await start_app(settings)
        try:
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            card = await eventually(lambda: [s.content for s in wecom.delivered() if "根因" in s.content])
            assert "DiskFull" in card[0] and "Root cause" not in card[0]
        finally:
            await app.stop()


async def test_each_robot_may_speak_its_group_language(tmp_path: Path) -> None:
    """Telegram groups in Taiwan (the default, zh-TW) and a WeCom group in mainland China (its robot: zh-CN)."""
    async with FakeWeCom(keys=("robot-key-0001", "robot-key-0002")) as wecom:
        settings = app_settings(tmp_path, language="zh-TW", wecom_webhook_keys="robot-key-0001@zh_cn,robot-key-0002",
                                wecom_api_base=wecom.base_url)
        app = await start_app(settings)
        try:
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            await eventually(lambda: len({s.key for s in wecom.delivered() if "DiskFull" in s.content}) == 2 or None)
            by_robot = {s.key: s.content for s in wecom.delivered() if "DiskFull" in s.content}
            assert "根因" in by_robot["robot-key-0001"] and "根本原因" in by_robot["robot-key-0002"]
        finally:
            await app.stop()


def test_a_robot_language_must_be_one_alertpilot_speaks() -> None:
    with pytest.raises(SettingsError, match="not a language alertpilot speaks: 'fr' after robot key robo"):
        load_settings(wecom_webhook_keys="robot-key-0001@fr")
    settings = load_settings(wecom_webhook_keys="robot-key-0001@zh-hans, robot-key-0002")
    assert settings.wecom_keys == ("robot-key-0001", "robot-key-0002")
    assert settings.wecom_key_languages == {"robot-key-0001": "zh-CN"}
