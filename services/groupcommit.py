"""Group commit: concurrent callers' items are written together, in one transaction, by one writer.

A webhook's 2xx must mean its alerts are stored, so every request waits for a commit. Committing each request
on its own makes the commit (and, on SQLite, the single writer) the bottleneck. ``GroupCommit.submit`` queues
the item and waits; one writer task takes everything queued (up to ``max_weight``), hands it to ``write`` as
one list and answers each caller with its own result once ``write`` returned, that is once the group is
committed. Under no load a group is one item and nothing waits longer than before; under load a group is
as large as what arrived while the previous one was written, so the cost of a commit is shared.

If ``write`` raises for a group of several items, each item is written again on its own, so one bad item
fails only its own caller. A caller that stops waiting (cancelled) does not stop the writer: its item may
still be stored, as it may be when a connection drops after the commit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R]]],
        *,
        weight: Callable[[T], int] = lambda _item: 1,
        max_weight: int = 1000,
        name: str = "group",
    ) -> None:
        """``write(items)`` stores the items in one transaction and returns one result per item, in order.
        ``weight``/``max_weight``: how large a group may grow (a single item heavier than that is a group of one)."""
        self._write, self._weight, self._max_weight, self._name = write, weight, max_weight, name
        self._queue: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # groups written, and the items in them (tests read them: items per group)
        self.items = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name=f"{self._name}-writer")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            group = self._take()
            try:
                await self._write_group(group)
            except BaseException:  # cancelled at shutdown: nobody is left waiting for ever
                for _item, future in group:
                    future.cancel()
                raise

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        group = [self._queue.popleft()]
        total = self._weight(group[0][0])
        while self._queue and total + self._weight(self._queue[0][0]) <= self._max_weight:
            entry = self._queue.popleft()
            total += self._weight(entry[0])
            group.append(entry)
        return group

    async def _write_group(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.groups += 1
        self.items += len(group)
        if len(group) == 1:
            await self._write_alone(group[0])
            return
        try:
            results = await self._write([item for item, _future in group])
        except Exception as exc:
            log.warning("group_commit_split", group=self._name, items=len(group), error=f"{type(exc).__name__}: {exc}")
            for entry in group:  # one at a time, so only the item at fault fails
                await self._write_alone(entry)
            return
        for (_item, future), result in zip(group, results, strict=True):
            if not future.done():  # done: the caller was cancelled
                future.set_result(result)

    async def _write_alone(self, entry: tuple[T, asyncio.Future[R]]) -> None:
        item, future = entry
        try:
            (result,) = await self._write([item])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
