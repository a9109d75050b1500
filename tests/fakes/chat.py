"""A recording ChatGateway for service tests; scripted failures make the outbox's paths visible."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.errors import DeliveryError, MessageGone
from services.ports import IncidentCard, card_version


@dataclass
class Sent:
    kind: str  # card | message
    chat_id: str
    message_id: str
    card: IncidentCard | None = None
    template: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    edited: bool = False

class FakeGateway:
    def __init__(self, channel: str = "telegram", *, can_edit: bool = True) -> None:
        self.channel = channel
        self.can_edit = can_edit
        self.sent: list[Sent] = []
        self.failures: list[DeliveryError] = []  # raised, in order, by the next calls
        self.gone: set[str] = set()  # message ids deleted in the chat
        self._ids = itertools.count(100)

    def is_group(self, chat_id: str) -> bool:
        return chat_id.startswith("-")

    def _maybe_fail(self) -> None:
        if self.failures:
            raise self.failures.pop(0)

    def shows(self, message_id: str, card: IncidentCard) -> bool:
        """Like a robot: a card without edits is current while its proposal's command is the same."""
        return message_id.endswith(f":{card_version(card)}")

    async def send_card(self, chat_id: str, card: IncidentCard, *, edit_message_id: str | None) -> str:
        self._maybe_fail()
        if edit_message_id is not None:
            if edit_message_id in self.gone:
                raise MessageGone("message to edit not found")
            self.sent.append(Sent("card", chat_id, edit_message_id, card=card, edited=True))
            return edit_message_id
        message_id = str(next(self._ids)) + ("" if self.can_edit else f":{card_version(card)}")
        self.sent.append(Sent("card", chat_id, message_id, card=card))
        return message_id

    async def send_message(self, chat_id: str, template: str, context: dict[str, Any], *, reply_to: str | None) -> str:
        self._maybe_fail()
        message_id = str(next(self._ids))
        self.sent.append(Sent("message", chat_id, message_id, template=template, context=context, reply_to=reply_to))
        return message_id

    def cards(self, *, edited: bool | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == "card" and (edited is None or s.edited == edited)]

    def messages(self, template: str | None = None) -> list[Sent]:
        return [s for s in self.sent if s.kind == "message" and (template is None or s.template == template)]

class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 24, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
