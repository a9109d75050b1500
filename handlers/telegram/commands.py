"""Slash commands: /start /help /whoami /chatid /incidents /status /audit /approve /reject /run, a helpful answer
to anything else, and the first-run note when alertpilot is added to a group that is not a card chat."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.enums import ChatType
from aiogram.filters import (
    ADMINISTRATOR,
    KICKED,
    LEFT,
    MEMBER,
    ChatMemberUpdatedFilter,
    Command,
    CommandObject,
    CommandStart,
)
from aiogram.types import ChatMemberUpdated, Message

from handlers.telegram.common import actor_of, is_private, message_ref, target_of, topic_of
from services.approvals import ApprovalService
from services.chat import ChatService, result_context
from services.errors import IncidentNotFound, InvalidIncidentRef
from services.manual import ManualProposals
from services.queries import EXPLICIT_REF, parse_incident_ref


async def on_start_command(message: Message, chat: ChatService) -> None:
    actor = actor_of(message.from_user, message.chat)
    await chat.start(actor, reply_to=message_ref(message), private=is_private(message.chat))


async def on_help_command(message: Message, chat: ChatService) -> None:
    await chat.help(actor_of(message.from_user, message.chat), reply_to=message_ref(message))


async def on_whoami_command(message: Message, chat: ChatService) -> None:
    await chat.whoami(actor_of(message.from_user, message.chat), reply_to=message_ref(message))


async def on_chatid_command(message: Message, chat: ChatService) -> None:
    await chat.chatid(actor_of(message.from_user, message.chat), private=is_private(message.chat),
                      thread_id=topic_of(message), reply_to=message_ref(message))


async def on_bot_added_to_group(event: ChatMemberUpdated, chat: ChatService) -> None:
    """Someone added alertpilot to a group: unless it is a card chat, say once how to configure it."""
    await chat.first_run(target_of(event.chat))


async def on_incidents_command(message: Message, chat: ChatService) -> None:
    await chat.incidents(actor_of(message.from_user, message.chat), reply_to=message_ref(message))


async def on_incident_command(
    message: Message, command: CommandObject, chat: ChatService, approvals: ApprovalService
) -> None:
    target, reply_to = target_of(message.chat), message_ref(message)
    name = command.command.lower()
    ref_text, _, rest = (command.args or "").strip().partition(" ")
    if not ref_text:
        await chat.say(target, "error", {"code": "usage", "command": name}, reply_to=reply_to)
        return
    try:
        incident_id = parse_incident_ref(ref_text)
        actor = actor_of(message.from_user, message.chat)
        if name == "status":
            await chat.status(actor, incident_id, reply_to=reply_to)
            return
        if name == "audit":
            await chat.audit(actor, incident_id, reply_to=reply_to)
            return
        result = await approvals.decide(incident_id=incident_id, actor=actor, approve=name == "approve", reason=rest)
        await chat.report(actor, result, reply_to=reply_to)
    except InvalidIncidentRef as exc:
        await chat.say(target, "error", {"code": "bad_ref", "text": exc.text[:64]}, reply_to=reply_to)
    except IncidentNotFound as exc:
        await chat.say(target, "error", {"code": "not_found", "ref": exc.ref}, reply_to=reply_to)


async def on_run_command(message: Message, command: CommandObject, chat: ChatService, manual: ManualProposals) -> None:
    """/run <command> [INC-12]: the incident may come first or last, written INC-12 or #12."""
    target, reply_to = target_of(message.chat), message_ref(message)
    words = (command.args or "").split()
    incident_id = None
    for position in (0, -1):
        if words and EXPLICIT_REF.match(words[position]):
            incident_id = parse_incident_ref(words.pop(position))
            break
    if not words:
        await chat.say(target, "error", {"code": "usage", "command": "run"}, reply_to=reply_to)
        return
    actor = actor_of(message.from_user, message.chat)
    try:
        result = await manual.run(actor=actor, command=" ".join(words), incident_id=incident_id)
    except IncidentNotFound as exc:
        await chat.say(target, "error", {"code": "not_found", "ref": exc.ref}, reply_to=reply_to)
        return
    await chat.say(target, "action_result", result_context(result), reply_to=reply_to)


async def on_unknown_command(message: Message, chat: ChatService, bot: Bot) -> None:
    command = (message.text or "").split()[0][:64]
    _, _, addressee = command.partition("@")
    if addressee and addressee.lower() != ((await bot.me()).username or "").lower():
        return  # a command for another bot in the same group
    await chat.say(target_of(message.chat), "error", {"code": "unknown_command", "command": command}, reply_to=message_ref(message))


def build_router() -> Router:
    """A fresh router per dispatcher (aiogram attaches a router to one parent only)."""
    router = Router(name=__name__)
    router.message.register(on_start_command, CommandStart())
    router.message.register(on_help_command, Command("help"))
    router.message.register(on_whoami_command, Command("whoami"))
    router.message.register(on_chatid_command, Command("chatid"))
    router.message.register(on_incidents_command, Command("incidents"))
    router.message.register(on_incident_command, Command("status", "audit", "approve", "reject"))
    router.message.register(on_run_command, Command("run"))
    router.message.register(on_unknown_command, F.text.startswith("/"))
    # registering it makes polling ask Telegram for my_chat_member updates (dp.resolve_used_update_types)
    router.my_chat_member.register(
        on_bot_added_to_group,
        ChatMemberUpdatedFilter((LEFT | KICKED) >> (MEMBER | ADMINISTRATOR)),
        F.chat.type.in_({ChatType.GROUP, ChatType.SUPERGROUP}),
    )
    return router
