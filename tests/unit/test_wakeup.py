"""The workers' wake-up signal: a wake-up and a shutdown arriving together must still stop the worker."""

from __future__ import annotations

import asyncio

from services.notify import Listener, Wakeup


async def test_listener_wait_returns_on_wake_and_on_timeout() -> None:
    wakeup = Wakeup()
    listener = wakeup.listener()
    wakeup.set()  # a wake-up that came while the worker was busy counts
    await asyncio.wait_for(listener.wait(5), 1)
    started = asyncio.get_running_loop().time()
    await listener.wait(0.05)
    assert asyncio.get_running_loop().time() - started >= 0.04


async def test_cancellation_in_the_same_turn_as_a_wake_up_stops_the_worker() -> None:
    # asyncio.wait_for on Python 3.11 swallows this cancellation; the worker then loops forever and the app
    # never shuts down (it hung a CI run: analyses finishing at shutdown wake the analysis worker).
    for _ in range(50):
        wakeup = Wakeup()
        listener = wakeup.listener()

        async def worker(listener: Listener) -> None:
            while True:
                await listener.wait(5)

        task = asyncio.create_task(worker(listener))
        await asyncio.sleep(0)
        wakeup.set()
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=1)
        assert done, "the worker ignored its cancellation"


async def test_a_wake_up_for_later_waits_and_the_earliest_one_set_wins() -> None:
    loop = asyncio.get_running_loop()
    wakeup = Wakeup()
    listener = wakeup.listener()
    started = loop.time()
    wakeup.set(after=30)
    wakeup.set(after=0.05)  # sooner: replaces the 30 s one
    wakeup.set(after=60)  # later than the one set: changes nothing
    await asyncio.wait_for(listener.wait(120), 5)  # woken by the 0.05 s one
    assert loop.time() - started >= 0.04  # not at once
    await asyncio.sleep(0.1)
    started = loop.time()
    await listener.wait(0.05)  # nothing else was pending: the 30 s and 60 s ones are gone
    assert loop.time() - started >= 0.04
