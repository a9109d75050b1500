"""Callback data: versioned prefixes, ids only, well under Telegram's 64-byte limit ("inc1:reanalyse:123456789012")."""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData

from services.ports import CardAction

CALLBACK_DATA_LIMIT = 64


class IncidentCb(CallbackData, prefix="inc1"):
    action: CardAction
    incident_id: int


class ListWhat(StrEnum):
    INCIDENTS = "incidents"


class ListCb(CallbackData, prefix="lst1"):
    """A list asked for from a message's button (the storm digest's "List incidents"): answered like /incidents."""

    what: ListWhat
