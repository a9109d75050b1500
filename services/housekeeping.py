"""Housekeeping: forget what is only kept to recognise a replay, once no replay can come.

A signed webhook's signature (``ingest:signature:…``) and a WeCom callback's msgid (``wecom:msgid:…``) are
marked so that the same request is refused or ignored the second time, and a processed Telegram webhook update
is kept so that a redelivery is recognised; their senders give up within minutes (the signature's timestamp
window is 5 minutes, WeCom retries within seconds, Telegram within hours). After a day they only take space.
The hourly job (handlers/jobs.py) runs this on one replica at a time.
"""

from __future__ import annotations

from datetime import timedelta

import structlog

from storage.clock import Clock
from storage.db import Database

log = structlog.get_logger(__name__)

REPLAY_MARKS = ("ingest:signature:", "wecom:msgid:")
KEEP = timedelta(days=1)


class Housekeeping:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._now = db, clock

    async def purge(self) -> int:
        """Delete replay marks and processed Telegram updates older than a day; how many went."""
        before = self._now() - KEEP
        async with self._db.write() as tx:
            marks = [await tx.kv.delete_marked_before(prefix, before) for prefix in REPLAY_MARKS]
            updates = await tx.telegram_updates.purge_done(before)
        if any(marks) or updates:
            log.info("housekeeping_purged", telegram_updates=updates,
                     **{p.rstrip(":").replace(":", "_"): n for p, n in zip(REPLAY_MARKS, marks, strict=True)})
        return sum(marks) + updates
