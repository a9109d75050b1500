"""Answers from data: /summary INC-12 and /ask (Telegram shows "typing…" while the model works), /kb,
/note INC-12 and /playbooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.chat_action import ChatActionSender

from handlers.telegram.common import actor_of, target_of
from services.assistant import AssistantService
from services.chat import ChatService
from services.errors import IncidentNotFound, InvalidIncidentRef
from services.queries import parse_incident_ref


def _reply_to(message: Message) -> str:
    return str(message.message_id)


async def on_summary_command(
    message: Message, command: CommandObject, bot: Bot, assistant: AssistantService, chat: ChatService
) -> None:
    ref_text = (command.args or "").strip().split(" ", 1)[0]
    if not ref_text:
        await chat.say(target_of(message.chat), "error", {"code": "usage", "command": "summary"}, reply_to=_reply_to(message))
        return
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id, message_thread_id=message.message_thread_id):
        await _with_incident(message, chat, ref_text, lambda incident_id: assistant.summary(
            actor_of(message.from_user, message.chat), incident_id, reply_to=_reply_to(message)))


async def on_ask_command(message: Message, command: CommandObject, bot: Bot, assistant: AssistantService) -> None:
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id, message_thread_id=message.message_thread_id):
        await assistant.ask(actor_of(message.from_user, message.chat), command.args or "", reply_to=_reply_to(message))


async def on_kb_command(message: Message, command: CommandObject, assistant: AssistantService) -> None:
    await assistant.kb(actor_of(message.from_user, message.chat), command.args or "", reply_to=_reply_to(message))


async def on_note_command(message: Message, command: CommandObject, assistant: AssistantService, chat: ChatService) -> None:
    ref_text, _, text = (command.args or "").strip().partition(" ")
    if not ref_text or not text.strip():
        await chat.say(target_of(message.chat), "error", {"code": "usage", "command": "note"}, reply_to=_reply_to(message))
        return
    await _with_incident(message, chat, ref_text, lambda incident_id: assistant.note(
        actor_of(message.from_user, message.chat), incident_id, text, reply_to=_reply_to(message)))


async def on_playbooks_command(message: Message, assistant: AssistantService) -> None:
    await assistant.playbooks(actor_of(message.from_user, message.chat), reply_to=_reply_to(message))


async def _with_incident(
    message: Message, chat: ChatService, ref_text: str, action: Callable[[int], Awaitable[None]]
) -> None:
    """Parse the incident id and run ``action(incident_id)``; a bad or unknown id gets a clear answer."""
    target, reply_to = target_of(message.chat), _reply_to(message)
    try:
        await action(parse_incident_ref(ref_text))
    except InvalidIncidentRef as exc:
        await chat.say(target, "error", {"code": "bad_ref", "text": exc.text[:64]}, reply_to=reply_to)
    except IncidentNotFound as exc:
        await chat.say(target, "error", {"code": "not_found", "ref": exc.ref}, reply_to=reply_to)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(on_summary_command, Command("summary"))
    router.message.register(on_ask_command, Command("ask"))
    router.message.register(on_kb_command, Command("kb"))
    router.message.register(on_note_command, Command("note"))
    router.message.register(on_playbooks_command, Command("playbooks"))
    return router
