"""What the scheduled work also offers on demand: /report [today|yesterday|7d], /postmortem INC-12, and the
silences: /silence <service | label=value …> <duration> [reason], /silences, /unsilence <id>."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.telegram.common import actor_of, message_ref, target_of, with_incident
from services.actions import Reply
from services.chat import ChatService
from services.postmortems import PostmortemService
from services.reports import ReportService
from services.silences import SilenceService


def _say(message: Message, chat: ChatService) -> Reply:
    return chat.sink(target_of(message.chat), reply_to=message_ref(message))


async def on_report_command(message: Message, command: CommandObject, reports: ReportService, chat: ChatService) -> None:
    await reports.on_demand(actor_of(message.from_user, message.chat), command.args or "", _say(message, chat))


async def on_postmortem_command(
    message: Message, command: CommandObject, postmortems: PostmortemService, chat: ChatService
) -> None:
    say = _say(message, chat)
    ref_text = (command.args or "").strip().split(" ", 1)[0]
    if not ref_text:
        await say("error", {"code": "usage", "command": "postmortem"})
        return
    actor = actor_of(message.from_user, message.chat)
    await with_incident(message, chat, ref_text, lambda incident_id: postmortems.on_demand(actor, incident_id, say))


async def on_silence_command(message: Message, command: CommandObject, silences: SilenceService, chat: ChatService) -> None:
    await silences.create(actor_of(message.from_user, message.chat), command.args or "", _say(message, chat))


async def on_silences_command(message: Message, silences: SilenceService, chat: ChatService) -> None:
    await silences.list(actor_of(message.from_user, message.chat), _say(message, chat))


async def on_unsilence_command(
    message: Message, command: CommandObject, silences: SilenceService, chat: ChatService
) -> None:
    await silences.remove(actor_of(message.from_user, message.chat), command.args or "", _say(message, chat))


def build_router() -> Router:
    """A fresh router per dispatcher (aiogram attaches a router to one parent only)."""
    router = Router(name=__name__)
    router.message.register(on_report_command, Command("report"))
    router.message.register(on_postmortem_command, Command("postmortem"))
    router.message.register(on_silence_command, Command("silence"))
    router.message.register(on_silences_command, Command("silences"))
    router.message.register(on_unsilence_command, Command("unsilence"))
    return router
