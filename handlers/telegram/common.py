"""Small helpers shared by the Telegram routers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram.enums import ChatType
from aiogram.types import Chat, Message, User

from services.actions import Actor
from services.chat import ANONYMOUS_TELEGRAM, ChatService
from services.errors import IncidentNotFound, InvalidIncidentRef
from services.ports import ChatTarget
from services.queries import parse_incident_ref

CHANNEL = "telegram"


def target_of(chat: Chat) -> ChatTarget:
    return ChatTarget(CHANNEL, str(chat.id))


def actor_of(user: User | None, chat: Chat) -> Actor:
    if user is None:  # anonymous group admin or a channel post
        return Actor(id=ANONYMOUS_TELEGRAM, name="anonymous", target=target_of(chat))
    name = f"@{user.username}" if user.username else user.full_name
    return Actor(id=f"tg:{user.id}", name=name, target=target_of(chat))


def is_private(chat: Chat) -> bool:
    return chat.type == ChatType.PRIVATE


def topic_of(message: Message) -> int | None:
    """The forum topic a message was written in (None outside forum topics: in an ordinary supergroup a reply
    also carries a message_thread_id, the id of the message it answers)."""
    return message.message_thread_id if message.is_topic_message else None


def message_ref(message: Message) -> str:
    """The id to answer a message with a reply to it."""
    return str(message.message_id)


async def with_incident(
    message: Message, chat: ChatService, ref_text: str, action: Callable[[int], Awaitable[None]]
) -> None:
    """Parse the incident id and run ``action(incident_id)``; a bad or unknown id gets a clear answer."""
    target = target_of(message.chat)
    try:
        await action(parse_incident_ref(ref_text))
    except InvalidIncidentRef as exc:
        await chat.say(target, "error", {"code": "bad_ref", "text": exc.text[:64]}, reply_to=message_ref(message))
    except IncidentNotFound as exc:
        await chat.say(target, "error", {"code": "not_found", "ref": exc.ref}, reply_to=message_ref(message))
