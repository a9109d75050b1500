"""bot/callbacks.py IncidentCb packing and bot/keyboards.py card_keyboard layout."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.callbacks import CALLBACK_DATA_LIMIT, IncidentCb
from bot.keyboards import card_keyboard
from bot.render import Renderer
from services.ports import DECISION_ACTIONS, CardAction, IncidentCard

IDS = [1, 9, 42, 123456789, 999999999999]


@pytest.mark.parametrize("incident_id", IDS)
@pytest.mark.parametrize("action", list(CardAction))
def test_callbacks_pack_fits_telegram_limit(action: CardAction, incident_id: int) -> None:
    data = IncidentCb(action=action, incident_id=incident_id).pack()
    assert data.startswith("inc1:")
    assert 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_LIMIT == 64
    assert data == f"inc1:{action.value}:{incident_id}"


@pytest.mark.parametrize("incident_id", IDS)
@pytest.mark.parametrize("action", list(CardAction))
def test_callbacks_unpack_round_trips(action: CardAction, incident_id: int) -> None:
    unpacked = IncidentCb.unpack(IncidentCb(action=action, incident_id=incident_id).pack())
    assert unpacked.action is action
    assert unpacked.incident_id == incident_id
    assert unpacked == IncidentCb(action=action, incident_id=incident_id)


def test_callbacks_longest_data_is_well_under_limit() -> None:
    longest = max(len(IncidentCb(action=a, incident_id=999999999999).pack().encode()) for a in CardAction)
    assert longest == len("inc1:reanalyse:999999999999")


@pytest.mark.parametrize("data", ["inc0:approve:1", "card:approve:1", "approve:1"])
def test_callbacks_unpack_rejects_other_prefixes(data: str) -> None:
    # aiogram's CallbackQueryFilter treats TypeError and ValueError alike: the handler is not matched
    with pytest.raises((TypeError, ValueError)):
        IncidentCb.unpack(data)


@pytest.mark.parametrize("data", ["inc1:explode:1", "inc1:approve:abc", "inc1:approve"])
def test_callbacks_unpack_rejects_malformed_data(data: str) -> None:
    # aiogram's CallbackQueryFilter treats TypeError and ValueError alike: the handler is not matched
    with pytest.raises((TypeError, ValueError)):
        IncidentCb.unpack(data)


# --- keyboards --------------------------------------------------------------------------------


def card(actions: tuple[CardAction, ...], incident_id: int = 42) -> IncidentCard:
    return IncidentCard(
        incident_id=incident_id,
        ref=f"INC-{incident_id}",
        status="firing",
        severity="critical",
        priority="P1",
        title="HighErrorRate",
        service="checkout",
        namespace="shop",
        summary="",
        alert_count=1,
        firing_count=1,
        repeat_count=0,
        since=datetime(2026, 11, 24, tzinfo=UTC),
        resolved_at=None,
        duration_minutes=None,
        analysing=False,
        proposal=None,
        actions=actions,
    )


@pytest.fixture
def labels() -> dict[str, str]:
    return dict(Renderer(ZoneInfo("Asia/Taipei")).strings("telegram").buttons)


A = CardAction


def test_callbacks_card_keyboard_decisions_first_row(labels: dict[str, str]) -> None:
    markup = card_keyboard(card((A.APPROVE, A.REJECT, A.DETAILS, A.REANALYSE, A.HISTORY)), labels)
    rows = markup.inline_keyboard
    assert len(rows) == 2
    assert [b.text for b in rows[0]] == [labels["approve"], labels["reject"]]
    assert [b.text for b in rows[1]] == [labels["details"], labels["reanalyse"], labels["history"]]
    assert [IncidentCb.unpack(b.callback_data).action for b in rows[0]] == [A.APPROVE, A.REJECT]
    assert [IncidentCb.unpack(b.callback_data).action for b in rows[1]] == [A.DETAILS, A.REANALYSE, A.HISTORY]
    for row in rows:
        for button in row:
            assert IncidentCb.unpack(button.callback_data).incident_id == 42
            assert len(button.callback_data.encode()) <= 64


def test_callbacks_card_keyboard_without_decisions_has_one_row(labels: dict[str, str]) -> None:
    rows = card_keyboard(card((A.DETAILS, A.HISTORY), incident_id=999999999999), labels).inline_keyboard
    assert len(rows) == 1
    assert [b.text for b in rows[0]] == [labels["details"], labels["history"]]
    assert rows[0][0].callback_data == "inc1:details:999999999999"


def test_callbacks_card_keyboard_labels_come_from_strings(labels: dict[str, str]) -> None:
    assert labels["approve"] == "✅ Approve"
    assert labels["reject"] == "❌ Reject"
    custom = {a.value: f"[{a.value}]" for a in CardAction}
    rows = card_keyboard(card(tuple(CardAction)), custom).inline_keyboard
    assert [b.text for row in rows for b in row] == [
        "[approve]", "[reject]", "[details]", "[reanalyse]", "[history]", "[silence]"
    ]
    assert all(a in DECISION_ACTIONS for a in (A.APPROVE, A.REJECT))
