"""storage/turns.py: one writer at a time, urgent waiters first, and cancellation never loses the turn."""

from __future__ import annotations

import asyncio

import pytest

from storage.turns import WriteTurns


async def test_one_at_a_time_urgent_waiters_first_then_arrival_order() -> None:
    turns, order, inside = WriteTurns(), [], []
    release = asyncio.Event()

    async def writer(name: str, urgent: bool = False) -> None:
        async with turns.turn(urgent=urgent):
            inside.append(name)
            assert len(inside) == 1, "two writers at once"
            order.append(name)
            if name == "first":
                await release.wait()
            await asyncio.sleep(0)
            inside.remove(name)

    first = asyncio.create_task(writer("first"))
    await asyncio.sleep(0)
    assert turns.busy
    others = [asyncio.create_task(writer(name, urgent)) for name, urgent in
              [("analysis", False), ("outbox", False), ("ingest", True), ("ingest-2", True)]]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *others)
    assert order == ["first", "ingest", "ingest-2", "analysis", "outbox"]
    assert not turns.busy


async def test_a_cancelled_waiter_does_not_keep_or_lose_the_turn() -> None:
    turns = WriteTurns()
    release = asyncio.Event()

    async def hold() -> None:
        async with turns.turn():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(turns._acquire(urgent=True))
    await asyncio.sleep(0)
    waiting.cancel()  # gave up while waiting
    with pytest.raises(asyncio.CancelledError):
        await waiting
    handed = asyncio.create_task(turns._acquire(urgent=False))
    await asyncio.sleep(0)
    release.set()
    await holder
    await asyncio.wait_for(handed, 1)  # the turn went past the cancelled waiter
    assert turns.busy
    turns._release()
    assert not turns.busy


async def test_a_waiter_cancelled_after_it_was_handed_the_turn_passes_it_on() -> None:
    turns = WriteTurns()
    await turns._acquire(urgent=False)
    first = asyncio.create_task(turns._acquire(urgent=True))
    second = asyncio.create_task(turns._acquire(urgent=False))
    await asyncio.sleep(0)
    turns._release()  # hands the turn to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert turns.busy
