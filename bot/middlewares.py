"""aiogram middleware: bind update/chat/user to the log context for everything an update causes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update


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
