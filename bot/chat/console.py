"""Console ChatGateway: without a Telegram token, cards and replies are rendered and written to the log,
so a newcomer sees the product work at once."""

from __future__ import annotations

import itertools
import sys
from typing import Any, TextIO

import structlog

from bot.render import Renderer, html_to_text
from services.ports import IncidentCard

log = structlog.get_logger(__name__)


class ConsoleGateway:
    channel = "console"
    can_edit = True

    def __init__(self, renderer: Renderer, stream: TextIO | None = None) -> None:
        self._render = renderer
        self._stream = stream
        self._ids = itertools.count(1)
        self._labels = dict(renderer.strings("telegram").buttons)

    def is_group(self, chat_id: str) -> bool:
        return False

    def shows(self, message_id: str, card: IncidentCard) -> bool:
        return False  # edits in place

    async def send_card(self, chat_id: str, card: IncidentCard, *, edit_message_id: str | None) -> str:
        text = html_to_text(self._render.render("telegram/card.html.j2", card=card))
        buttons = " ".join(f"[{self._labels[a]}]" for a in card.actions)
        message_id = edit_message_id or f"c{next(self._ids)}"
        verb = "card updated" if edit_message_id else "new card"
        self._write(f"── {verb} {card.ref} (message {message_id}) ──\n{text}\n{buttons}")
        log.info("console_card", incident=card.ref, message_id=message_id, edited=edit_message_id is not None)
        return message_id

    async def send_message(self, chat_id: str, template: str, context: dict[str, Any], *, reply_to: str | None) -> str:
        text = html_to_text(self._render.render(f"telegram/{template}.html.j2", **context))
        message_id = f"c{next(self._ids)}"
        thread = f" ↳ reply to {reply_to}" if reply_to else ""
        self._write(f"── message {message_id}{thread} ──\n{text}")
        log.info("console_message", template=template, message_id=message_id, reply_to=reply_to)
        return message_id

    def _write(self, block: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(block + "\n")
        stream.flush()
