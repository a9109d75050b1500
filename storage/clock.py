"""Time, in one place: aware UTC datetimes everywhere inside alertpilot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]

__all__ = ["UTC", "Clock", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)
