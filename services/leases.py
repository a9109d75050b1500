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
from storage.tables import Lease

log = structlog.get_logger(__name__)


class LeaseLost(Exception):
    """The lease expired and another holder took it: this holder's work must not commit."""


def process_owner() -> str:
    """This process's name in leases and claims: host, pid and a random part (a restarted pid differs)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def holder_gone(owner: str) -> bool:
    """True when ``owner`` (another process's process_owner()) ran on this host and its pid runs no more.
    False when unknown (another host; a pid reused): such a lease expires instead."""
    parts = owner.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname()[:40] or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):
        return False  # alive (someone else's), or not a pid
    return False


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

    async def take_over(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take a lease from ``holder`` before it expires (it is known to be gone); False if it changed hands."""
        now = self._now()
        async with self._db.write() as tx:
            return await tx.leases.take_over(name, holder, self.owner, now, now + ttl)

    async def get(self, name: str) -> Lease | None:
        async with self._db.read() as tx:
            return await tx.leases.get(name)

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
