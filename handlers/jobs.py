"""Scheduled job entry points (bot/scheduler.py runs them with APScheduler). Each is thin: it takes its
turn or occurrence lease and calls a service. A job's failure is logged and never stops the scheduler; the
next tick tries again. Every run is counted on /metrics (alertpilot_job_runs_total{name,outcome}): ``ok``,
``error``, or ``skipped`` when it was not this replica's turn or there was nothing due."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from services.housekeeping import Housekeeping
from services.leases import JobLeases
from services.metrics import Metrics
from services.postmortems import PostmortemService
from services.reminders import ReminderService
from services.reports import ReportService
from services.schedule import ReportKind
from services.silences import SilenceService

log = structlog.get_logger(__name__)

TURN = timedelta(minutes=2)  # a periodic job's turn lease: longer than one tick takes, short enough to take over
OK, ERROR, SKIPPED = "ok", "error", "skipped"


@dataclass(frozen=True)
class Jobs:
    leases: JobLeases
    reports: ReportService
    silences: SilenceService
    reminders: ReminderService | None  # None: ALERTPILOT_APPROVAL_REMINDER_MINUTES=0
    postmortems: PostmortemService
    weekly: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    housekeeping: Housekeeping | None = None  # None: not scheduled (tests that build Jobs by hand)

    async def daily_report(self) -> None:
        await self._logged("daily_report", self.reports.send_due, ReportKind.DAILY)

    async def weekly_digest(self) -> None:
        if self.weekly:
            await self._logged("weekly_digest", self.reports.send_due, ReportKind.WEEKLY)

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

    async def housekeeping_due(self) -> None:
        if self.housekeeping is not None:
            await self._turn("housekeeping", self.housekeeping.purge)

    async def postmortems_due(self) -> None:
        await self._turn("postmortems", self.postmortems.send_due)

    async def _turn(self, name: str, work: Callable[[], Awaitable[Any]]) -> None:
        async def tick() -> bool:
            async with self.leases.turn(f"job:{name}", TURN) as held:
                if held:
                    await work()
                return held

        await self._logged(name, tick)

    async def _logged(self, name: str, work: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``work``; a False result means it did nothing this time (another replica's turn, or done)."""
        try:
            outcome = SKIPPED if await work(*args) is False else OK
        except Exception:
            log.exception("job_failed", job=name)
            outcome = ERROR
        self.metrics.inc("alertpilot_job_runs_total", name=name, outcome=outcome)
