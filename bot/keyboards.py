"""View model → inline keyboard. Decision buttons on the first row, info buttons below."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import IncidentCb
from services.ports import DECISION_ACTIONS, IncidentCard


def card_keyboard(card: IncidentCard, labels: dict[str, str]) -> InlineKeyboardMarkup:
    def button(action: str) -> InlineKeyboardButton:
        data = IncidentCb(action=action, incident_id=card.incident_id).pack()
        return InlineKeyboardButton(text=labels[action], callback_data=data)

    decisions = [button(a) for a in card.actions if a in DECISION_ACTIONS]
    info = [button(a) for a in card.actions if a not in DECISION_ACTIONS]
    return InlineKeyboardMarkup(inline_keyboard=[row for row in (decisions, info) if row])
