"""aiogram middleware: bind update/chat/user to the log context for everything an update causes, and hand
handlers a renderer that speaks the chat's language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from bot.render import Renderer
from services.languages import ChatLanguages
from services.ports import ChatTarget


class LogContextMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        fields: dict[str, Any] = {}
        if isinstance(event, Update):
            fields["update_id"] = event.update_id
        chat = data.get("event_chat")
        user = data.get("event_from_user")
        if chat is not None:
            fields["chat_id"] = chat.id
        if user is not None:
            fields["user_id"] = user.id
        with structlog.contextvars.bound_contextvars(**fields):
            return await handler(event, data)


class ChatLanguageMiddleware(BaseMiddleware):
    """``renderer`` for handlers is the chat's: bound to its language (/lang, else ALERTPILOT_LANGUAGE), so a
    callback's toast or an immediate answer is in the same language as the chat's cards."""

    def __init__(self, languages: ChatLanguages) -> None:
        self._languages = languages

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat = data.get("event_chat")
        renderer = data.get("renderer")
        if chat is not None and isinstance(renderer, Renderer):
            data["renderer"] = renderer.bound(await self._languages.of(ChatTarget("telegram", str(chat.id))))
        return await handler(event, data)
