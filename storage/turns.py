"""Turns at SQLite's one writer, within a process: one transaction at a time, urgent ones first.

An ``asyncio.Lock`` serves its waiters in arrival order, so during an alert storm the ingest's group commit
(every webhook's acknowledgement waits for it) queued behind the analyses, card sends and other background
writes of the incidents it had just opened. ``WriteTurns`` serves the waiting urgent transactions first, then
the others in arrival order. A transaction is never interrupted; an urgent one waits at most for the one in
progress. Background writers still get their turn whenever no urgent one is waiting: between two of the
ingest's groups, the requests that arrived meanwhile are queued in the group commit, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteTurns:
    def __init__(self) -> None:
        self._busy = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def busy(self) -> bool:
        return self._busy

    @asynccontextmanager
    async def turn(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if not self._busy and not self._urgent and not self._normal:
            self._busy = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed the turn, then cancelled: pass it on
                self._release()
            else:
                with contextlib.suppress(ValueError):  # already passed over by _release
                    queue.remove(waiter)
            raise

    def _release(self) -> None:
        """Hand the turn to the next waiter (urgent ones first), or free it."""
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)  # still busy: the turn goes straight to it
                    return
        self._busy = False
