"""Answers from data: /summary INC-12 and /ask (Telegram shows "typing…" while the model works), /kb,
/note INC-12 and /playbooks."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.chat_action import ChatActionSender

from handlers.telegram.common import actor_of, message_ref, target_of, with_incident
from services.assistant import AssistantService
from services.chat import ChatService


async def on_summary_command(
    message: Message, command: CommandObject, bot: Bot, assistant: AssistantService, chat: ChatService
) -> None:
    ref_text = (command.args or "").strip().split(" ", 1)[0]
    if not ref_text:
        await chat.say(target_of(message.chat), "error", {"code": "usage", "command": "summary"}, reply_to=message_ref(message))
        return
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id, message_thread_id=message.message_thread_id):
        await with_incident(message, chat, ref_text, lambda incident_id: assistant.summary(
            actor_of(message.from_user, message.chat), incident_id, reply_to=message_ref(message)))


async def on_ask_command(message: Message, command: CommandObject, bot: Bot, assistant: AssistantService) -> None:
    async with ChatActionSender.typing(bot=bot, chat_id=message.chat.id, message_thread_id=message.message_thread_id):
        await assistant.ask(actor_of(message.from_user, message.chat), command.args or "", reply_to=message_ref(message))


async def on_kb_command(message: Message, command: CommandObject, assistant: AssistantService) -> None:
    await assistant.kb(actor_of(message.from_user, message.chat), command.args or "", reply_to=message_ref(message))


async def on_note_command(message: Message, command: CommandObject, assistant: AssistantService, chat: ChatService) -> None:
    ref_text, _, text = (command.args or "").strip().partition(" ")
    if not ref_text or not text.strip():
        await chat.say(target_of(message.chat), "error", {"code": "usage", "command": "note"}, reply_to=message_ref(message))
        return
    await with_incident(message, chat, ref_text, lambda incident_id: assistant.note(
        actor_of(message.from_user, message.chat), incident_id, text, reply_to=message_ref(message)))


async def on_playbooks_command(message: Message, assistant: AssistantService) -> None:
    await assistant.playbooks(actor_of(message.from_user, message.chat), reply_to=message_ref(message))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(on_summary_command, Command("summary"))
    router.message.register(on_ask_command, Command("ask"))
    router.message.register(on_kb_command, Command("kb"))
    router.message.register(on_note_command, Command("note"))
    router.message.register(on_playbooks_command, Command("playbooks"))
    return router
