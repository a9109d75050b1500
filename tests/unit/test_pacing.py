"""services/pacing.py: SlidingWindow and Pacer, driven with explicit ``now`` values."""

from __future__ import annotations

import pytest

from services.pacing import Pacer, SlidingWindow
from services.ports import ChannelLimits

GROUP, OTHER_GROUP, PRIVATE = "-1001", "-1002", "555"


def is_group(chat_id: str) -> bool:
    return chat_id.startswith("-")


@pytest.fixture
def pacer() -> Pacer:
    return Pacer(ChannelLimits(per_chat_per_second=1.0, per_group_per_minute=20.0, per_bot_per_second=30.0), is_group)


def send(pacer: Pacer, chat_id: str, now: float) -> float:
    """Wait as told, then record the send; returns the time it was sent."""
    at = now + pacer.delay(chat_id, now)
    assert pacer.delay(chat_id, at) == 0.0
    pacer.record(chat_id, at)
    return at


# --- SlidingWindow ------------------------------------------------------------------------------


def test_pacing_window_allows_up_to_limit() -> None:
    window = SlidingWindow(3, 10.0)
    for t in (0.0, 1.0, 2.0):
        assert window.delay(t) == 0.0
        window.record(t)
    assert window.delay(2.5) == pytest.approx(7.5)  # oldest event (0.0) leaves the window at 10.0


def test_pacing_window_frees_slot_exactly_at_window_end() -> None:
    window = SlidingWindow(1, 1.0)
    window.record(5.0)
    assert window.delay(5.0) == pytest.approx(1.0)
    assert window.delay(5.999) == pytest.approx(0.001)
    assert window.delay(6.0) == 0.0


def test_pacing_window_slides() -> None:
    window = SlidingWindow(2, 10.0)
    window.record(0.0)
    window.record(9.0)
    assert window.delay(9.5) == pytest.approx(0.5)
    window.record(10.0)
    assert window.delay(12.0) == pytest.approx(7.0)  # now the oldest is 9.0
    assert window.delay(19.0) == 0.0


def test_pacing_window_limit_at_least_one() -> None:
    window = SlidingWindow(0, 1.0)
    assert window.delay(0.0) == 0.0
    window.record(0.0)
    assert window.delay(0.5) == pytest.approx(0.5)


# --- Pacer --------------------------------------------------------------------------------------


def test_pacing_one_message_per_second_per_chat(pacer: Pacer) -> None:
    assert pacer.delay(PRIVATE, 100.0) == 0.0
    pacer.record(PRIVATE, 100.0)
    assert pacer.delay(PRIVATE, 100.0) == pytest.approx(1.0)
    assert pacer.delay(PRIVATE, 100.4) == pytest.approx(0.6)
    assert pacer.delay(PRIVATE, 101.0) == 0.0


def test_pacing_chats_are_paced_independently(pacer: Pacer) -> None:
    pacer.record(PRIVATE, 0.0)
    assert pacer.delay("777", 0.0) == 0.0
    assert pacer.delay(GROUP, 0.0) == 0.0


def test_pacing_twenty_per_minute_per_group(pacer: Pacer) -> None:
    times = [send(pacer, GROUP, float(t)) for t in range(20)]
    assert times == [float(t) for t in range(20)]  # 1/s is respected and the first 20 go out
    # the 21st waits until the first leaves the window (a minute and a second's margin), not just 1 s
    assert pacer.delay(GROUP, 20.0) == pytest.approx(41.0)
    assert pacer.delay(GROUP, 60.5) == pytest.approx(0.5)
    assert send(pacer, GROUP, 60.5) == pytest.approx(61.0)
    # and the 22nd waits for the second send (t=1) to leave the window
    assert pacer.delay(GROUP, 61.0) == pytest.approx(1.0)


def test_pacing_group_sustained_rate_is_twenty_per_minute(pacer: Pacer) -> None:
    now = 0.0
    sent = []
    for _ in range(100):
        now = send(pacer, GROUP, now)
        sent.append(now)
    for i in range(len(sent) - 20):
        assert sent[i + 20] - sent[i] >= 60.0 - 1e-9
    for earlier, later in zip(sent, sent[1:]):
        assert later - earlier >= 1.0 - 1e-9


def test_pacing_group_limit_is_per_group(pacer: Pacer) -> None:
    for t in range(20):
        send(pacer, GROUP, float(t))
    assert pacer.delay(GROUP, 20.0) > 0
    assert pacer.delay(OTHER_GROUP, 20.0) == 0.0


def test_pacing_private_chat_has_no_group_limit(pacer: Pacer) -> None:
    times = [send(pacer, PRIVATE, float(t)) for t in range(60)]
    assert times == [float(t) for t in range(60)]  # 60 in a minute: only the 1/s limit applies
    assert pacer.delay(PRIVATE, 60.0) == 0.0


def test_pacing_pause_until_from_429(pacer: Pacer) -> None:
    pacer.pause(PRIVATE, 130.0)  # retry_after=30 received at 100
    assert pacer.delay(PRIVATE, 100.0) == pytest.approx(30.0)
    assert pacer.delay(PRIVATE, 129.0) == pytest.approx(1.0)
    assert pacer.delay(PRIVATE, 130.0) == 0.0
    assert pacer.delay("777", 100.0) == 0.0  # other chats are not paused


def test_pacing_pause_never_shortens(pacer: Pacer) -> None:
    pacer.pause(GROUP, 200.0)
    pacer.pause(GROUP, 150.0)
    assert pacer.delay(GROUP, 100.0) == pytest.approx(100.0)


def test_pacing_pause_and_window_take_the_longer_wait(pacer: Pacer) -> None:
    pacer.record(PRIVATE, 100.0)
    pacer.pause(PRIVATE, 100.5)
    assert pacer.delay(PRIVATE, 100.0) == pytest.approx(1.0)
    pacer.pause(PRIVATE, 105.0)
    assert pacer.delay(PRIVATE, 100.0) == pytest.approx(5.0)


def test_pacing_bot_wide_limit() -> None:
    pacer = Pacer(ChannelLimits(per_chat_per_second=1.0, per_group_per_minute=20.0, per_bot_per_second=3.0), is_group)
    for chat in ("1", "2", "3"):
        assert pacer.delay(chat, 0.0) == 0.0
        pacer.record(chat, 0.0)
    assert pacer.delay("4", 0.0) == pytest.approx(1.0)  # a fresh chat still waits for the bot budget
    assert pacer.delay("4", 1.0) == 0.0


def test_pacing_lower_chat_rate() -> None:
    pacer = Pacer(ChannelLimits(per_chat_per_second=0.5, per_group_per_minute=20.0, per_bot_per_second=30.0), is_group)
    pacer.record(PRIVATE, 0.0)
    assert pacer.delay(PRIVATE, 0.0) == pytest.approx(2.0)
