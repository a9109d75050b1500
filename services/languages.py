"""The languages alertpilot speaks, and which one each chat gets (issue 11).

``ALERTPILOT_LANGUAGE`` is the default; an admin may set a chat's own with ``/lang zh-TW`` (stored in the kv
table as ``lang:<channel>:<chat id>``, so every replica and every restart sees it). The chat gateways ask
``ChatLanguages.of`` when they render a message; the answer is cached for ``CACHE_SECONDS`` (another replica's
``/lang`` shows within that time).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from services.actions import Actor
from services.ports import ChatTarget
from services.roles import Role, RoleMap
from storage.db import Database

DEFAULT_LANGUAGE = "en"
# code → its own name (what /lang lists)
LANGUAGES = {"en": "English", "zh-CN": "简体中文", "zh-TW": "繁體中文"}
# what the AI model is told to answer in
MODEL_LANGUAGES = {"en": "English", "zh-CN": "Simplified Chinese (简体中文)", "zh-TW": "Traditional Chinese (繁體中文, Taiwan)"}
_ALIASES = {
    "en": "en", "english": "en", "en-us": "en", "en-gb": "en",
    "zh-cn": "zh-CN", "zh_cn": "zh-CN", "zh-hans": "zh-CN", "zh-hans-cn": "zh-CN", "cn": "zh-CN", "简体中文": "zh-CN",
    "zh-tw": "zh-TW", "zh_tw": "zh-TW", "zh-hant": "zh-TW", "zh-hant-tw": "zh-TW", "tw": "zh-TW", "繁體中文": "zh-TW",
}
CACHE_SECONDS = 30.0
log = structlog.get_logger(__name__)
# Told when a chat's language is set (the Telegram command menu follows it); a failure is logged, never the
# reply's failure.
LanguageListener = Callable[[ChatTarget, str], Awaitable[None]]


def parse_language(text: str) -> str | None:
    """A language code as people write it (zh-TW, zh_tw, zh-Hant, tw, English…) → en | zh-CN | zh-TW, or None."""
    return _ALIASES.get(text.strip().lower())


def language_key(target: ChatTarget) -> str:
    return f"lang:{target.channel}:{target.chat_id}"


@dataclass(frozen=True)
class LanguageChange:
    outcome: str  # set | unknown | not_allowed | shown
    lang: str  # the chat's language now
    default: str  # ALERTPILOT_LANGUAGE
    requested: str = ""

    def context(self) -> dict[str, object]:
        """What the ``lang`` template shows (both channels)."""
        return {"outcome": self.outcome, "current": self.lang, "default": self.default, "requested": self.requested,
                "languages": dict(LANGUAGES)}


class ChatLanguages:
    def __init__(self, db: Database, roles: RoleMap, *, default: str = DEFAULT_LANGUAGE) -> None:
        if default not in LANGUAGES:
            raise ValueError(f"unknown language {default!r}")
        self._db, self._roles, self.default = db, roles, default
        self._cache: dict[str, tuple[float, str]] = {}
        self._listeners: list[LanguageListener] = []

    def subscribe(self, listener: LanguageListener) -> None:
        """``listener(target, lang)`` runs after each /lang that sets a chat's language."""
        self._listeners.append(listener)

    async def chats(self, channel: str) -> dict[str, str]:
        """The chats of ``channel`` that have their own language (set with /lang, not the default): id → code."""
        prefix = f"lang:{channel}:"
        async with self._db.read() as tx:
            stored = await tx.kv.with_prefix(prefix)
        return {key[len(prefix):]: lang for key, lang in stored.items() if lang in LANGUAGES and lang != self.default}

    async def of(self, target: ChatTarget) -> str:
        """The chat's language: its own (/lang), else the default."""
        key = language_key(target)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self._db.read() as tx:
            stored = await tx.kv.get(key)
        lang = stored if stored in LANGUAGES else self.default
        self._cache[key] = (time.monotonic(), lang)
        return lang

    async def change(self, actor: Actor, text: str) -> LanguageChange:
        """``/lang`` (show the chat's language) or ``/lang zh-TW`` (admins: set it; ``default`` goes back to
        ALERTPILOT_LANGUAGE)."""
        current = await self.of(actor.target)
        words = text.split()
        if not words:
            return LanguageChange("shown", current, self.default)
        requested = words[0][:32]
        lang = self.default if requested.lower() == "default" else parse_language(requested)
        if lang is None:
            return LanguageChange("unknown", current, self.default, requested)
        if not self._roles.allows(actor.id, Role.ADMIN):
            return LanguageChange("not_allowed", current, self.default, requested)
        async with self._db.write() as tx:
            await tx.kv.put(language_key(actor.target), lang)
        self._cache[language_key(actor.target)] = (time.monotonic(), lang)
        for listener in self._listeners:
            try:
                await listener(actor.target, lang)
            except Exception:  # the language is set; a menu that did not follow is not the user's error
                log.exception("language_listener_failed", chat=actor.target.chat_id, lang=lang)
        return LanguageChange("set", lang, self.default, requested)
