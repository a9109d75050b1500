"""The daily KPI report, the weekly digest and ``/report [today|yesterday|7d]``.

Figures come from SQL aggregates (storage/reports.py) and are shown as they are: a deployment that has not
remediated anything shows zeros and dashes, never invented numbers. The health grade is the remediation
success rate when something was remediated in the period, otherwise the share of the period's incidents
that are resolved: ≥ 80 % excellent, ≥ 50 % good, else needs attention (no incidents: quiet).

Scheduled reports run once per occurrence under a database lease (services/leases.py); the outbox rows
and the lease's "done" commit together, and each row has a de-duplication key, so a report is never sent
twice, whatever replicas or restarts do. A report whose time passed while alertpilot was down is sent at
start-up if it is still within the grace window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from services.actions import Actor, Reply
from services.analysis import AUTO_DECISION
from services.chat import ChatService, refusal
from services.leases import JobLeases
from services.notify import Notifier
from services.ports import ChatTarget
from services.schedule import (
    ON_DEMAND,
    Period,
    ReportKind,
    latest_daily,
    latest_weekly,
    local_midnight,
    period_of,
    previous,
)
from services.views import clip
from storage.clock import Clock
from storage.db import Database
from storage.repos import Tx

log = structlog.get_logger(__name__)

REPORT_LEASE = timedelta(minutes=5)  # building and queueing a report takes well under a second
ON_TIME = timedelta(minutes=5)  # a run this late is the scheduled one, not a catch-up (grace 0 disables only those)
GRADES = ((80.0, "excellent"), (50.0, "good"))
# Figures the weekly digest compares, and whether more is better (the arrow's colour follows it).
TRENDS = {
    "alerts": False, "incidents": False, "repeats": False, "human_approved": True, "rejected": False,
    "auto_resolved": True, "remediations": True, "success_rate": True, "mtta_seconds": False, "mttr_seconds": False,
    "approval_p50_seconds": False, "knowledge": True,
}


def grade(figures: dict[str, Any]) -> tuple[str, float | None, str]:
    """(grade, rate in %, basis): on the remediation success rate when there were remediations, otherwise on
    the resolution rate of the period's incidents."""
    if figures["remediations"]:
        rate, basis = figures["success_rate"], "remediation"
    elif figures["incidents"]:
        rate, basis = 100.0 * figures["resolved_of_opened"] / figures["incidents"], "resolution"
    else:
        return "quiet", None, "none"
    for threshold, name in GRADES:
        if rate >= threshold:
            return name, rate, basis
    return "attention", rate, basis


def trend(current: float | None, before: float | None, *, more_is_better: bool) -> dict[str, Any]:
    """An arrow for the digest: ↑ ↓ or → (unchanged or nothing to compare), and whether the change is good."""
    if current is None or before is None or current == before:
        return {"arrow": "→", "good": None, "delta": None}
    up = current > before
    delta = None if before == 0 else round(100.0 * (current - before) / before)
    return {"arrow": "↑" if up else "↓", "good": up == more_is_better, "delta": delta}


def parse_kind(text: str) -> ReportKind | None:
    """``/report`` argument: today (default), yesterday, 7d (also 7, week); None when unknown."""
    word = text.strip().lower() or "today"
    aliases = {"7": "7d", "week": "7d", "7days": "7d"}
    try:
        kind = ReportKind(aliases.get(word, word))
    except ValueError:
        return None
    return kind if kind in ON_DEMAND else None


class ReportService:
    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        chat: ChatService,
        leases: JobLeases,
        clock: Clock,
        *,
        tz: ZoneInfo,
        at: time,
        targets: Sequence[ChatTarget],
        grace: timedelta,
    ) -> None:
        self._db, self._notify, self._chat, self._leases, self._now = db, notifier, chat, leases, clock
        self.tz, self.at, self.targets, self.grace = tz, at, tuple(targets), grace

    # --- figures -----------------------------------------------------------------------------------

    async def figures(self, tx: Tx, start: datetime, end: datetime) -> dict[str, Any]:
        reports = tx.reports
        alerts = await reports.alerts(start, end)
        incidents = await reports.incidents(start, end)
        resolutions = await reports.resolutions(start, end)
        decisions = await reports.decisions(start, end, auto_actor=AUTO_DECISION["decided_by"])
        runs = await reports.executions(start, end)
        auto_runs = runs["auto_succeeded"] + runs["auto_failed"]
        succeeded = runs["auto_succeeded"] + runs["approved_succeeded"]
        remediations = auto_runs + runs["approved_succeeded"] + runs["approved_failed"]
        figures: dict[str, Any] = {
            **alerts, **incidents, **resolutions, **decisions, **runs,
            "auto_rate": None if not auto_runs else 100.0 * runs["auto_succeeded"] / auto_runs,
            "remediations": remediations,
            "success_rate": None if not remediations else 100.0 * succeeded / remediations,
            "noisiest": await reports.noisiest(start, end),
            "categories": await reports.categories(start, end),
            "knowledge": await reports.knowledge(start, end),
            **await reports.playbooks(),
        }
        figures["grade"], figures["grade_rate"], figures["grade_basis"] = grade(figures)
        return figures

    async def context(self, period: Period) -> dict[str, Any]:
        """Everything the report template shows (JSON-safe: it goes into an outbox row)."""
        now = self._now()
        # the next local midnight (not start + 24 h: a day is 23 or 25 hours long where clocks change)
        end_of_today = local_midnight(now.astimezone(self.tz).date() + timedelta(days=1), self.tz)
        async with self._db.read() as tx:
            figures = await self.figures(tx, period.start, period.end)
            compare = None
            if period.kind is ReportKind.WEEKLY:
                before = previous(period, self.tz)
                compare = await self.figures(tx, before.start, before.end)
            ending = await tx.reports.silences_ending(now, end_of_today)
        context: dict[str, Any] = {
            "kind": period.kind.value,
            "first_day": period.first_day.isoformat(),
            "last_day": period.last_day.isoformat(),
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "timezone": str(self.tz),
            "figures": figures,
            "silences_ending": [
                {"id": s.id, "matchers": matchers_text(s.matchers), "ends_at": s.ends_at.isoformat()} for s in ending
            ],
        }
        if compare is not None:
            context["previous"] = compare
            context["trends"] = {
                name: trend(figures[name], compare[name], more_is_better=better) for name, better in TRENDS.items()
            }
        return context

    # --- scheduled -------------------------------------------------------------------------------

    def occurrence(self, kind: ReportKind, now: datetime) -> datetime:
        return latest_weekly(now, self.at, self.tz) if kind is ReportKind.WEEKLY else latest_daily(now, self.at, self.tz)

    def lease_name(self, kind: ReportKind, fired_at: datetime) -> str:
        return f"report:{kind.value}:{fired_at.astimezone(self.tz).date().isoformat()}"

    async def send_due(self, kind: ReportKind) -> bool:
        """Send the latest scheduled ``kind`` report unless it was sent, or its grace window has passed.
        True when this call queued it."""
        now = self._now()
        fired_at = self.occurrence(kind, now)
        name = self.lease_name(kind, fired_at)
        if now - fired_at > max(self.grace, ON_TIME):
            return False  # too old to be useful; the next one comes at its time
        if not self.targets or not await self._leases.acquire(name, REPORT_LEASE):
            return False  # done already, or another replica is on it
        try:
            context = await self.context(period_of(kind, now, self.tz, fired_at=fired_at))
            async with self._db.write() as tx:
                await self._leases.complete(tx, name)  # LeaseLost rolls the rows back
                for target in self.targets:
                    await self._notify.answer(
                        tx, target, "report", context, self._now(), dedup_key=f"{name}:{target.channel}:{target.chat_id}"
                    )
        except BaseException:
            await self._leases.release(name)  # let the next tick (here or on another replica) try again
            raise
        self._notify.wake()
        log.info("report_sent", kind=kind.value, occurrence=name, targets=len(self.targets),
                 late_minutes=round((now - fired_at).total_seconds() / 60, 1))
        return True

    # --- on demand -------------------------------------------------------------------------------

    async def on_demand(self, actor: Actor, argument: str, say: Reply) -> None:
        if not self._chat.may_read(actor):
            await say("action_result", refusal(""))
            return
        kind = parse_kind(argument)
        if kind is None:
            await say("error", {"code": "usage", "command": "report"})
            return
        await say("report", await self.context(period_of(kind, self._now(), self.tz)))


def matchers_text(matchers: dict[str, str]) -> str:
    return clip(" ".join(f"{k}={v}" for k, v in sorted(matchers.items())), 200)
