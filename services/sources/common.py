"""Validation helpers and limits shared by the ingress adapters (Alertmanager, Grafana, generic JSON).

Every helper is pure and raises services.errors.InvalidPayload naming the offending field (``where``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from services.errors import InvalidPayload
from storage.clock import UTC

MAX_ALERTS_PER_PAYLOAD = 10_000
MAX_FINGERPRINT_CHARS = 128
MAX_URL_CHARS = 4096  # a link longer than this is not something a chat card can carry
MIN_YEAR, MAX_YEAR = 1970, 2200

_ZERO_TIME_PREFIX = "0001-01-01"
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)


def label_fingerprint(labels: dict[str, str]) -> str:
    """Stable identity for alerts that arrive without a fingerprint: a hash of the sorted labels."""
    raw = "\xff".join(f"{k}\xff{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def parse_time(value: Any, where: str) -> datetime | None:
    """RFC 3339 with any number of fractional digits; Go's zero time means "not set"."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidPayload(where, "must be an RFC 3339 timestamp string")
    if value.startswith(_ZERO_TIME_PREFIX):
        return None
    m = _RFC3339.match(value)
    if not m:
        raise InvalidPayload(where, f"{value[:40]!r} is not an RFC 3339 timestamp")
    day, clock, frac, zone = m.groups()
    micro = (frac or "").ljust(6, "0")[:6]
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}").astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidPayload(where, f"{value[:40]!r} is not a valid time") from exc
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise InvalidPayload(where, f"{value[:40]!r} is out of range (years {MIN_YEAR}-{MAX_YEAR})")
    return parsed


def check_text(value: str, where: str) -> str:
    """Text we can store and show: no NUL (PostgreSQL refuses it) and no lone UTF-16 surrogates."""
    if "\x00" in value:
        raise InvalidPayload(where, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(where, "is not valid Unicode (lone surrogate)") from exc
    return value


def as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(where, "must be a JSON object")
    return value


def required_str(body: dict[str, Any], key: str, where: str) -> str:
    if key not in body:
        raise InvalidPayload(where, "required")
    value = body[key]
    if not isinstance(value, str):
        raise InvalidPayload(where, "must be a string")
    return check_text(value, where)


def optional_str(body: dict[str, Any], key: str, where: str) -> str:
    """The string at ``key``; "" when it is missing or null."""
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidPayload(where, "must be a string")
    return check_text(value, where)


def parse_status(value: Any, where: str) -> str:
    if value is None:
        raise InvalidPayload(where, "required")
    if value not in ("firing", "resolved"):
        raise InvalidPayload(where, f"must be \"firing\" or \"resolved\", not {str(value)[:40]!r}")
    return str(value)


def parse_labels(value: Any, where: str) -> dict[str, str]:
    """A map of string names to string values (labels, annotations); null means empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload(where, "must be an object of string values")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidPayload(f"{where}.{key}", "must be a string")
        check_text(key, f"{where} (a name)")
        check_text(item, f"{where}.{key}")
    return dict(value)


def alert_list(value: Any, where: str) -> list[Any]:
    """The raw alerts array: present, a list, not empty, at most MAX_ALERTS_PER_PAYLOAD entries."""
    if value is None:
        raise InvalidPayload(where, "required")
    if not isinstance(value, list):
        raise InvalidPayload(where, "must be a list")
    if not value:
        raise InvalidPayload(where, "must contain at least one alert")
    if len(value) > MAX_ALERTS_PER_PAYLOAD:
        raise InvalidPayload(where, f"at most {MAX_ALERTS_PER_PAYLOAD} alerts per request")
    return value


def truncated_count(body: dict[str, Any], key: str) -> int:
    """``truncatedAlerts``: how many alerts the sender dropped; 0 when absent."""
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidPayload(key, "must be a non-negative integer")
    return value


def fingerprint_of(alert: dict[str, Any], labels: dict[str, str], where: str, key: str = "fingerprint") -> str:
    """The sender's fingerprint, or one derived from the labels when it is missing or empty."""
    fingerprint = alert.get(key) or label_fingerprint(labels)
    if not isinstance(fingerprint, str) or len(fingerprint) > MAX_FINGERPRINT_CHARS:
        raise InvalidPayload(where, f"must be a string of at most {MAX_FINGERPRINT_CHARS} characters")
    return check_text(fingerprint, where)


def is_http_url(value: str) -> bool:
    """An absolute http:// or https:// URL with a host, at most MAX_URL_CHARS long, without whitespace."""
    if len(value) > MAX_URL_CHARS or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a malformed IPv6 host "http://[::1"
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def http_link(value: str, base: str = "") -> str:
    """``value`` if it is an absolute http(s) URL, or a root-relative path (``/d/abc``) resolved against an
    http(s) ``base``; otherwise "" (the link is dropped, not the alert)."""
    if value.startswith("/") and not value.startswith("//") and is_http_url(base):
        try:
            value = urljoin(base, value)
        except ValueError:
            return ""
    return value if is_http_url(value) else ""


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
