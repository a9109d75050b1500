"""Small parsing helpers shared by the Telegram routers."""

from __future__ import annotations

from aiogram.types import Chat, User

from services.actions import Actor
from services.ports import ChatTarget

CHANNEL = "telegram"


def target_of(chat: Chat) -> ChatTarget:
    return ChatTarget(CHANNEL, str(chat.id))


def actor_of(user: User | None, chat: Chat) -> Actor:
    if user is None:  # anonymous group admin or a channel post
        return Actor(id="tg:anonymous", name="anonymous", target=target_of(chat))
    name = f"@{user.username}" if user.username else user.full_name
    return Actor(id=f"tg:{user.id}", name=name, target=target_of(chat))
