"""Silence matchers and durations: pure parsing and matching (services/silences.py uses them for the
commands, services/incidents.py when an incident opens)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from storage.tables import Incident, Silence

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=30)
MAX_MATCHERS = 8
REASON_MAX = 300
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d{1,5}[smhdw])+$")
_PART = re.compile(r"(\d{1,5})([smhdw])")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SERVICE = re.compile(r"^[A-Za-z0-9_.:/-]{1,120}$")
INCIDENT_FIELDS = ("alertname", "namespace", "severity")


class SilenceError(ValueError):
    """The command's arguments are wrong; ``code`` names the problem for the error template."""

    def __init__(self, code: str, text: str = "") -> None:
        super().__init__(f"{code}: {text}")
        self.code, self.text = code, text


def parse_duration(text: str) -> timedelta:
    """``90m``, ``1h30m``, ``2d`` → timedelta (1 min … 30 days); SilenceError otherwise."""
    word = text.strip().lower()
    if not _DURATION.match(word):
        raise SilenceError("bad_duration", text[:32])
    duration = timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(word)))
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise SilenceError("duration_range", text[:32])
    return duration


def parse_silence(text: str) -> tuple[dict[str, str], timedelta, str]:
    """``checkout 2h deploy in progress`` / ``namespace=prod alertname=DiskFull 30m`` → (matchers, duration,
    reason). The matchers come first, then the duration, then an optional reason."""
    words = text.split()
    matchers: dict[str, str] = {}
    for index, word in enumerate(words):
        if _DURATION.match(word.lower()):
            if not matchers:
                raise SilenceError("no_matcher")
            return matchers, parse_duration(word), " ".join(words[index + 1 :])[:REASON_MAX]
        label, equals, value = word.partition("=")
        value = value.strip("\"'")
        if equals:
            if not _LABEL.match(label) or not value or len(value) > 200:
                raise SilenceError("bad_matcher", word[:64])
            matchers[label] = value
        elif _SERVICE.match(word) and "service" not in matchers:
            matchers["service"] = word
        else:
            raise SilenceError("bad_matcher", word[:64])
        if len(matchers) > MAX_MATCHERS:
            raise SilenceError("bad_matcher", word[:64])
    raise SilenceError("no_duration" if matchers else "usage")


def matches(matchers: dict[str, str], incident: Incident) -> bool:
    """Whether every matcher holds for the incident (its common labels, service, alertname, namespace, severity)."""
    labels = dict(incident.common_labels or {})
    for name in INCIDENT_FIELDS:
        if getattr(incident, name):
            labels.setdefault(name, getattr(incident, name))
    for label, value in matchers.items():
        if label == "service" and value in (incident.service, labels.get("service")):
            continue
        if labels.get(label) != value:
            return False
    return True


def first_match(silences: Sequence[Silence], incident: Incident) -> Silence | None:
    return next((s for s in silences if matches(s.matchers, incident)), None)
