"""Database leases, so that scheduled work runs exactly once however many replicas share the database.

An occurrence (``report:daily:2026-11-24``) is run by whoever takes its lease; the holder marks it done in
the same transaction as the work's effects (the report's outbox rows), so a holder that dies before that
commit leaves nothing behind, its lease expires, and another replica (or this one after a restart) runs
it. A done occurrence never runs again. Periodic jobs (silence expiry, reminders, postmortems) take a
turn lease for each tick and release it afterwards; their work is compare-and-set anyway.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import structlog

from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    """The lease expired and another holder took it: this holder's work must not commit."""


def process_owner() -> str:
    """This process's name in leases and claims: host, pid and a random part (a restarted pid differs)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobLeases:
    def __init__(self, db: Database, clock: Clock, owner: str) -> None:
        self._db, self._now, self.owner = db, clock, owner

    async def acquire(self, name: str, ttl: timedelta) -> bool:
        now = self._now()
        async with self._db.write() as tx:
            return await tx.leases.acquire(name, self.owner, now, now + ttl)

    async def complete(self, tx: Tx, name: str) -> None:
        """Mark the occurrence done inside the transaction that commits its effects; LeaseLost rolls it back."""
        if not await tx.leases.complete(name, self.owner, self._now()):
            raise LeaseLost(name)

    async def release(self, name: str) -> None:
        async with self._db.write() as tx:
            await tx.leases.release(name, self.owner, self._now())

    async def is_done(self, name: str) -> bool:
        async with self._db.read() as tx:
            lease = await tx.leases.get(name)
        return lease is not None and lease.done_at is not None

    @contextlib.asynccontextmanager
    async def turn(self, name: str, ttl: timedelta) -> AsyncIterator[bool]:
        """A periodic job's tick: yields whether this process holds the turn; released afterwards."""
        held = await self.acquire(name, ttl)
        try:
            yield held
        finally:
            if held:
                await self.release(name)
