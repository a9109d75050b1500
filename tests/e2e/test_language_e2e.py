"""End to end: /lang on Telegram and `lang` on WeCom. Anyone sees the chat's language; an admin changes it,
the answer already comes in the new language, and it survives a restart (stored, not in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.settings import SettingsError, load_settings
from tests.e2e.test_wecom_callback_e2e import CALLBACKS, NOW, Clock, crypto, mention, opened, post_callback, sealed
from tests.fakes.botapi import FakeBotAPI
from tests.harness import CHAT_ID, ROLES, VIEWER, app_settings, start_app

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
    finally:
        await app.stop()

    app = await start(tmp_path, bot_api)  # the same database: the chat's language is stored
    try:
        again = await ask(bot_api, VIEWER, "/lang", "預設為")
        assert "此群組使用繁體中文" in again and "English" in again
        back = await ask(bot_api, ADMIN, "/lang default", "This chat now speaks English")
        assert back
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
