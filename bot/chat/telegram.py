"""Telegram ChatGateway: renders views through templates/telegram and talks to the Bot API through aiogram.
Maps aiogram's errors onto the delivery errors the outbox understands."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import structlog
from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BotCommand, BotCommandScopeChat, LinkPreviewOptions, Message, ReplyParameters

from bot.keyboards import MESSAGE_BUTTONS, card_keyboard, message_keyboard
from bot.render import TELEGRAM_TEXT_LIMIT, Renderer, telegram_visible_length
from services.errors import DeliveryError, MessageGone, PermanentDeliveryError, RateLimited, TransientDeliveryError
from services.ports import ChatTarget, IncidentCard, Languages

log = structlog.get_logger(__name__)
T = TypeVar("T")
GONE_MARKERS = ("message to edit not found", "message_id_invalid", "message can't be edited")
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class TelegramGateway:
    channel = "telegram"
    can_edit = True

    def __init__(self, bot: Bot, renderer: Renderer, languages: Languages | None = None) -> None:
        """``languages``: each chat's language (/lang); without it every chat gets the renderer's default."""
        self._bot, self._render, self._languages = bot, renderer, languages

    async def _lang(self, chat_id: str) -> str:
        if self._languages is None:
            return self._render.default_lang
        return await self._languages.of(ChatTarget(self.channel, chat_id))

    def is_group(self, chat_id: str) -> bool:
        return chat_id.startswith("-")

    async def register_commands(self) -> None:
        """Publish the command menu in the default language, and each chat's own (/lang) for that chat; a
        failure (Telegram down, bad token) is logged, never fatal."""
        try:
            await self._call(self._bot.set_my_commands(self._commands(self._render.default_lang)))
            if self._languages is not None:
                for chat_id, lang in (await self._languages.chats(self.channel)).items():
                    await self.use_language(ChatTarget(self.channel, chat_id), lang)
        except DeliveryError as exc:
            log.warning("telegram_set_commands_failed", error=str(exc))

    async def use_language(self, target: ChatTarget, lang: str) -> None:
        """The command menu of one chat in its language (/lang); back to the default menu for the default
        language. Raises DeliveryError."""
        if target.channel != self.channel or not target.chat_id.lstrip("-").isdigit():
            return
        scope = BotCommandScopeChat(chat_id=int(target.chat_id))
        if lang == self._render.default_lang:
            await self._call(self._bot.delete_my_commands(scope=scope))
        else:
            await self._call(self._bot.set_my_commands(self._commands(lang), scope=scope))

    def _commands(self, lang: str) -> list[BotCommand]:
        return [BotCommand(command=c, description=d)
                for c, d in self._render.strings("telegram", lang=lang).commands.items()]

    def shows(self, message_id: str, card: IncidentCard) -> bool:
        return False  # edits in place

    async def send_card(self, chat_id: str, card: IncidentCard, *, edit_message_id: str | None) -> str:
        lang = await self._lang(chat_id)
        text = self._checked(self._render.render("telegram/card.html.j2", lang=lang, card=card))
        markup = card_keyboard(card, dict(self._render.strings("telegram", lang=lang).buttons))
        if edit_message_id is None:
            sent = await self._call(
                self._bot.send_message(
                    chat_id=int(chat_id), text=text, parse_mode=ParseMode.HTML, reply_markup=markup,
                    link_preview_options=NO_PREVIEW,
                )
            )
            return str(sent.message_id)
        try:
            await self._call(
                self._bot.edit_message_text(
                    chat_id=int(chat_id), message_id=int(edit_message_id), text=text, parse_mode=ParseMode.HTML,
                    reply_markup=markup, link_preview_options=NO_PREVIEW,
                )
            )
        except PermanentDeliveryError as exc:
            message = str(exc).lower()
            if "message is not modified" in message:
                return edit_message_id  # the card already shows this state: success
            if any(marker in message for marker in GONE_MARKERS):
                raise MessageGone(str(exc)) from exc
            raise
        return edit_message_id

    async def send_message(self, chat_id: str, template: str, context: dict[str, Any], *, reply_to: str | None) -> str:
        lang = await self._lang(chat_id)
        text = self._checked(self._render.render(f"telegram/{template}.html.j2", lang=lang, **context))
        markup = None
        if template in MESSAGE_BUTTONS:
            markup = message_keyboard(template, dict(self._render.strings("telegram", lang=lang).message_buttons))
        reply = None
        if reply_to is not None:
            reply = ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
        sent: Message = await self._call(
            self._bot.send_message(
                chat_id=int(chat_id), text=text, parse_mode=ParseMode.HTML, reply_parameters=reply,
                reply_markup=markup, link_preview_options=NO_PREVIEW,
            )
        )
        return str(sent.message_id)

    @staticmethod
    def _checked(text: str) -> str:
        if telegram_visible_length(text) > TELEGRAM_TEXT_LIMIT:
            # Views truncate every field before rendering; reaching this is a bug in a view or template.
            raise PermanentDeliveryError(f"rendered message has {telegram_visible_length(text)} characters")
        return text

    @staticmethod
    async def _call(request: Awaitable[T]) -> T:
        try:
            return await request
        except TelegramRetryAfter as exc:
            raise RateLimited(float(exc.retry_after), exc.message) from exc
        except TelegramMigrateToChat as exc:
            log.error("telegram_chat_migrated", new_chat_id=exc.migrate_to_chat_id,
                      hint=f"the group became a supergroup: set ALERTPILOT_TELEGRAM_CHAT_ID={exc.migrate_to_chat_id}")
            raise PermanentDeliveryError(
                f"the group became a supergroup with id {exc.migrate_to_chat_id}: "
                f"set ALERTPILOT_TELEGRAM_CHAT_ID={exc.migrate_to_chat_id} and restart"
            ) from exc
        except (TimeoutError, TelegramServerError, TelegramNetworkError, aiohttp.ClientError) as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except TelegramBadRequest as exc:
            raise PermanentDeliveryError(exc.message) from exc
        except Exception as exc:  # forbidden, unauthorized, not found, migrate-to-chat: retrying will not help
            if exc.__class__.__module__.startswith("aiogram"):
                raise PermanentDeliveryError(f"{type(exc).__name__}: {exc}") from exc
            raise
