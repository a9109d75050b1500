"""Housekeeping: replay marks (signed webhooks, WeCom msgids) and processed Telegram webhook updates are
forgotten after a day, nothing else is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.jobs import Jobs
from services.housekeeping import Housekeeping
from services.leases import JobLeases
from storage.db import Database

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def mark(at: datetime) -> str:
    return f"{at.isoformat()} 1a2b3c4d"  # what handlers/http/ingress.py and wecom.py store


async def test_replay_marks_older_than_a_day_are_purged_and_nothing_else(url: str) -> None:
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as tx:
            await tx.kv.put("ingest:signature:ci:old", mark(NOW - timedelta(days=2)))
            await tx.kv.put("ingest:signature:ci:new", mark(NOW - timedelta(minutes=3)))
            await tx.kv.put("wecom:msgid:old", mark(NOW - timedelta(hours=25)))
            await tx.kv.put("wecom:msgid:new", mark(NOW - timedelta(hours=23)))
            await tx.kv.put("onboarded:tg:-100", mark(NOW - timedelta(days=300)))  # said once, ever: kept
            await tx.kv.put("lang:telegram:-100", "zh-TW")
            await tx.kv.put("wecom:msgid_x:old", mark(NOW - timedelta(days=2)))  # "_" is no LIKE wildcard here
            for update_id, received in ((1, NOW - timedelta(days=2)), (2, NOW - timedelta(hours=2)),
                                        (3, NOW - timedelta(days=3))):
                assert await tx.telegram_updates.add(update_id, {"update_id": update_id}, "me", received)
            await tx.telegram_updates.finish(1, "me", NOW - timedelta(days=2))
            await tx.telegram_updates.finish(2, "me", NOW - timedelta(hours=2))  # 3: never processed, kept
        assert await Housekeeping(db, lambda: NOW).purge() == 3
        async with db.read() as tx:
            left = {**await tx.kv.with_prefix("ingest:"), **await tx.kv.with_prefix("wecom:"),
                    **await tx.kv.with_prefix("onboarded:"), **await tx.kv.with_prefix("lang:")}
        assert sorted(left) == ["ingest:signature:ci:new", "lang:telegram:-100", "onboarded:tg:-100",
                                "wecom:msgid:new", "wecom:msgid_x:old"]
        async with db.read() as tx:
            assert [u for u in (1, 2, 3) if await tx.telegram_updates.get(u) is not None] == [2, 3]
        assert await Housekeeping(db, lambda: NOW).purge() == 0
    finally:
        await db.dispose()


async def test_the_hourly_job_purges_under_its_turn_lease_and_counts_its_runs(url: str) -> None:
    db = Database(url)
    try:
        await db.create_schema()
        async with db.write() as tx:
            await tx.kv.put("wecom:msgid:old", mark(NOW - timedelta(days=2)))
        jobs = Jobs(JobLeases(db, lambda: NOW, "replica-1"), None, None, None, None,  # type: ignore[arg-type]
                    housekeeping=Housekeeping(db, lambda: NOW))
        await jobs.housekeeping_due()
        async with db.read() as tx:
            assert await tx.kv.get("wecom:msgid:old") is None
            assert (await tx.leases.get("job:housekeeping")) is not None  # taken and released: one replica at a time
        assert jobs.metrics.value("alertpilot_job_runs_total", name="housekeeping", outcome="ok") == 1
    finally:
        await db.dispose()
