"""When scheduled work is due, in local time: pure functions of "now" (tests drive them with any clock).

The daily report fires at ``at`` local time and covers the previous local calendar day; the weekly digest
fires on Monday at the same time and covers the previous Monday–Sunday, compared with the week before.
Times are computed in the configured zone (Asia/Taipei by default) whatever zone the host is in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from storage.clock import UTC

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ReportKind(StrEnum):
    DAILY = "daily"  # the scheduled report: yesterday
    WEEKLY = "weekly"  # the scheduled digest: last week against the week before
    TODAY = "today"  # /report today: since local midnight
    YESTERDAY = "yesterday"
    LAST_7_DAYS = "7d"  # /report 7d: the last 7 × 24 hours


ON_DEMAND = (ReportKind.TODAY, ReportKind.YESTERDAY, ReportKind.LAST_7_DAYS)


@dataclass(frozen=True)
class Period:
    kind: ReportKind
    start: datetime  # aware UTC, inclusive
    end: datetime  # aware UTC, exclusive
    first_day: date  # local
    last_day: date  # local (inclusive)


def parse_hhmm(text: str) -> time:
    """``08:00`` → time(8, 0); ValueError saying what is expected."""
    found = _HHMM.match(text.strip())
    if found is None:
        raise ValueError(f"not a time of day: {text!r} (use HH:MM, 24-hour, e.g. 08:00)")
    return time(int(found.group(1)), int(found.group(2)))


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def latest_daily(now: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The most recent daily fire time at or before ``now`` (aware UTC)."""
    local = now.astimezone(tz)
    fire = datetime.combine(local.date(), at, tzinfo=tz)
    if fire.astimezone(UTC) > now:  # moments, not wall-clock times (a repeated DST hour)
        fire = datetime.combine(local.date() - timedelta(days=1), at, tzinfo=tz)
    return fire.astimezone(UTC)


def latest_weekly(now: datetime, at: time, tz: ZoneInfo, weekday: int = 0) -> datetime:
    """The most recent weekly fire time (Monday by default) at or before ``now`` (aware UTC)."""
    local = now.astimezone(tz)
    day = local.date() - timedelta(days=(local.weekday() - weekday) % 7)
    fire = datetime.combine(day, at, tzinfo=tz)
    if fire.astimezone(UTC) > now:  # moments, not wall-clock times (a repeated DST hour)
        fire = datetime.combine(day - timedelta(days=7), at, tzinfo=tz)
    return fire.astimezone(UTC)


def days(first: date, last: date, kind: ReportKind, tz: ZoneInfo) -> Period:
    return Period(kind, local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz), first, last)


def period_of(kind: ReportKind, now: datetime, tz: ZoneInfo, *, fired_at: datetime | None = None) -> Period:
    """The period a report covers. Scheduled kinds take the occurrence they fire for (``fired_at``, local
    date of the fire time); on-demand kinds end now."""
    today = (fired_at or now).astimezone(tz).date()
    if kind in (ReportKind.DAILY, ReportKind.YESTERDAY):
        return days(today - timedelta(days=1), today - timedelta(days=1), kind, tz)
    if kind is ReportKind.WEEKLY:
        return days(today - timedelta(days=7), today - timedelta(days=1), kind, tz)
    if kind is ReportKind.TODAY:
        return Period(kind, local_midnight(today, tz), now, today, today)
    start = now - timedelta(days=7)
    return Period(kind, start, now, start.astimezone(tz).date(), today)


def previous(period: Period, tz: ZoneInfo) -> Period:
    """The period of the same length just before (the weekly digest's comparison)."""
    length = (period.last_day - period.first_day).days + 1
    first = period.first_day - timedelta(days=length)
    return days(first, period.first_day - timedelta(days=1), period.kind, tz)
