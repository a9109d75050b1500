"""Scheduled job entry points (bot/scheduler.py runs them with APScheduler). Each is thin: it takes its
turn or occurrence lease and calls a service. A job's failure is logged and never stops the scheduler; the
next tick tries again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from services.leases import JobLeases
from services.postmortems import PostmortemService
from services.reminders import ReminderService
from services.reports import ReportService
from services.schedule import ReportKind
from services.silences import SilenceService

log = structlog.get_logger(__name__)

TURN = timedelta(minutes=2)  # a periodic job's turn lease: longer than one tick takes, short enough to take over


@dataclass(frozen=True)
class Jobs:
    leases: JobLeases
    reports: ReportService
    silences: SilenceService
    reminders: ReminderService | None  # None: ALERTPILOT_APPROVAL_REMINDER_MINUTES=0
    postmortems: PostmortemService
    weekly: bool = True

    async def daily_report(self) -> None:
        await _logged("daily_report", self.reports.send_due, ReportKind.DAILY)

    async def weekly_digest(self) -> None:
        if self.weekly:
            await _logged("weekly_digest", self.reports.send_due, ReportKind.WEEKLY)

    async def catch_up(self) -> None:
        """At start-up and every few minutes: a report whose time passed while nobody sent it (down, or a
        misfire) goes now, within the grace window; one that was sent is never sent again."""
        await self.daily_report()
        await self.weekly_digest()

    async def silence_expiry(self) -> None:
        await self._turn("silence_expiry", self.silences.expire_due)

    async def approval_reminders(self) -> None:
        if self.reminders is not None:
            await self._turn("approval_reminders", self.reminders.remind_due)

    async def postmortems_due(self) -> None:
        await self._turn("postmortems", self.postmortems.send_due)

    async def _turn(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        async def tick() -> None:
            async with self.leases.turn(f"job:{name}", TURN) as held:
                if held:
                    await work()

        await _logged(name, tick)


async def _logged(name: str, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
    try:
        await work(*args)
    except Exception:
        log.exception("job_failed", job=name)
