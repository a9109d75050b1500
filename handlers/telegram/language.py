"""/lang: show the chat's language, or (admins) set it: /lang zh-TW, /lang default."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.telegram.common import actor_of, message_ref
from services.chat import ChatService
from services.languages import ChatLanguages


async def on_lang_command(message: Message, command: CommandObject, chat: ChatService, languages: ChatLanguages) -> None:
    actor = actor_of(message.from_user, message.chat)
    change = await languages.change(actor, command.args or "")
    await chat.say(actor.target, "lang", change.context(), reply_to=message_ref(message))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(on_lang_command, Command("lang"))
    return router
