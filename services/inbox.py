"""The Telegram webhook's inbox (ALERTPILOT_TELEGRAM_MODE=webhook).

An update is stored, claimed by the replica that received it, before Telegram gets its 200: an acknowledged
update is never lost. That replica processes it at once in the background and marks it done. If it dies
first, the claim goes stale and any replica (or this one, restarted) takes it over; on SQLite, one process
owns the file and takes back its unfinished updates at start-up. Telegram posting an update again (it did not
see the 200 in time), to this replica or another, finds its update_id stored and nothing happens twice. Done
updates are forgotten after a day (services/housekeeping.py).

Liveness is a matter of wall-clock time, so the inbox is given the real clock even where a test drives the
rest of the app with its own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog

from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)

STALE_AFTER = timedelta(minutes=2)  # a claim older than this belongs to a replica that died mid-update


class UpdateInbox:
    def __init__(self, db: Database, clock: Clock, owner: str, *, stale_after: timedelta = STALE_AFTER) -> None:
        self._db, self._now, self.owner, self._stale_after = db, clock, owner, stale_after

    async def accept(self, update_id: int, body: dict[str, Any]) -> bool:
        """Store a posted update, claimed by this replica; False when it was posted before (a redelivery)."""
        async with self._db.write() as tx:
            return await tx.telegram_updates.add(update_id, body, self.owner, self._now())

    async def claim_abandoned(self, limit: int = 50) -> list[tuple[int, dict[str, Any]]]:
        """Updates whose replica died before finishing them (or released at start-up), now this one's."""
        now = self._now()
        stale_before = now - self._stale_after
        async with self._db.read() as tx:
            candidates = await tx.telegram_updates.claimable(stale_before, limit)
        taken: list[tuple[int, dict[str, Any]]] = []
        for update_id in candidates:
            async with self._db.write() as tx:
                body = await tx.telegram_updates.claim(update_id, self.owner, now, stale_before)
            if body is not None:
                taken.append((update_id, body))
        if taken:
            log.info("telegram_updates_taken_over", count=len(taken), update_ids=[u for u, _ in taken][:20])
        return taken

    async def finish(self, update_id: int, error: str | None = None) -> None:
        async with self._db.write() as tx:
            if not await tx.telegram_updates.finish(update_id, self.owner, self._now(), error):
                log.warning("telegram_update_claim_lost", update_id=update_id)  # taken over while slow

    async def release_own_claims(self) -> int:
        """Single-process start-up (SQLite): what the last run left unfinished is processed again now."""
        async with self._db.write() as tx:
            released = await tx.telegram_updates.release_claims()
        if released:
            log.info("telegram_updates_released", count=released)
        return released
