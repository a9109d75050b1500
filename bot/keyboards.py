"""View model → inline keyboard. Decision buttons on the first row, info buttons below; messages (not cards)
have buttons by template."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callbacks import IncidentCb, ListCb, ListWhat
from services.ports import DECISION_ACTIONS, IncidentCard


def card_keyboard(card: IncidentCard, labels: dict[str, str]) -> InlineKeyboardMarkup:
    def button(action: str) -> InlineKeyboardButton:
        data = IncidentCb(action=action, incident_id=card.incident_id).pack()
        return InlineKeyboardButton(text=labels[action], callback_data=data)

    decisions = [button(a) for a in card.actions if a in DECISION_ACTIONS]
    info = [button(a) for a in card.actions if a not in DECISION_ACTIONS]
    return InlineKeyboardMarkup(inline_keyboard=[row for row in (decisions, info) if row])


# template → the label keys (templates/telegram/strings.j2 message_buttons) and callback data of its buttons
MESSAGE_BUTTONS = {"storm_digest": (("list_incidents", ListCb(what=ListWhat.INCIDENTS)),)}


def message_keyboard(template: str, labels: dict[str, str]) -> InlineKeyboardMarkup | None:
    """The buttons of a message rendered from ``template`` (None: it has none)."""
    buttons = MESSAGE_BUTTONS.get(template)
    if not buttons:
        return None
    row = [InlineKeyboardButton(text=labels[key], callback_data=data.pack()) for key, data in buttons]
    return InlineKeyboardMarkup(inline_keyboard=[row])
