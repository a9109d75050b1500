"""Prometheus Alertmanager webhook (payload version 4): a pure parse function, no I/O.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from services.errors import InvalidPayload
from services.ingest_model import AlertBatch, IncomingAlert
from storage.clock import UTC

_ZERO_TIME_PREFIX = "0001-01-01"
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)
MAX_ALERTS_PER_PAYLOAD = 10_000
MIN_YEAR, MAX_YEAR = 1970, 2200


def parse_alertmanager(payload: Any) -> AlertBatch:
    """Validate an Alertmanager v4 webhook body (already JSON-decoded) into an AlertBatch.

    Raises InvalidPayload naming the first offending field (``alerts[2].labels.alertname``)."""
    body = _obj(payload, "body")
    version = body.get("version")
    if version is None:
        raise InvalidPayload("version", "required (Alertmanager sends \"4\")")
    if str(version) != "4":
        raise InvalidPayload("version", f"unsupported version {version!r}; only \"4\" is accepted")
    receiver = _str(body, "receiver", "receiver")
    group_key = _str(body, "groupKey", "groupKey")
    status = _status(body.get("status"), "status")
    raw_alerts = body.get("alerts")
    if raw_alerts is None:
        raise InvalidPayload("alerts", "required")
    if not isinstance(raw_alerts, list):
        raise InvalidPayload("alerts", "must be a list")
    if not raw_alerts:
        raise InvalidPayload("alerts", "must contain at least one alert")
    if len(raw_alerts) > MAX_ALERTS_PER_PAYLOAD:
        raise InvalidPayload("alerts", f"at most {MAX_ALERTS_PER_PAYLOAD} alerts per request")
    alerts = [_alert(raw, f"alerts[{i}]") for i, raw in enumerate(raw_alerts)]
    truncated = body.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise InvalidPayload("truncatedAlerts", "must be a non-negative integer")
    return AlertBatch(
        source="alertmanager",
        receiver=receiver,
        group_key=group_key,
        status=status,
        group_labels=_labels(body.get("groupLabels", {}), "groupLabels"),
        common_labels=_labels(body.get("commonLabels", {}), "commonLabels"),
        common_annotations=_labels(body.get("commonAnnotations", {}), "commonAnnotations"),
        external_url=_opt_str(body, "externalURL", "externalURL"),
        truncated_alerts=truncated,
        alerts=alerts,
    )


def _alert(raw: Any, where: str) -> IncomingAlert:
    alert = _obj(raw, where)
    status = _status(alert.get("status"), f"{where}.status")
    if "labels" not in alert:
        raise InvalidPayload(f"{where}.labels", "required")
    labels = _labels(alert["labels"], f"{where}.labels")
    if not labels.get("alertname"):
        raise InvalidPayload(f"{where}.labels.alertname", "required")
    annotations = _labels(alert.get("annotations", {}), f"{where}.annotations")
    if "startsAt" not in alert:
        raise InvalidPayload(f"{where}.startsAt", "required")
    starts_at = parse_time(alert["startsAt"], f"{where}.startsAt")
    ends_at = parse_time(alert.get("endsAt"), f"{where}.endsAt")
    fingerprint = alert.get("fingerprint") or label_fingerprint(labels)
    if not isinstance(fingerprint, str) or len(fingerprint) > 128:
        raise InvalidPayload(f"{where}.fingerprint", "must be a string of at most 128 characters")
    _text(fingerprint, f"{where}.fingerprint")
    return IncomingAlert(
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=_opt_str(alert, "generatorURL", f"{where}.generatorURL"),
    )


def label_fingerprint(labels: dict[str, str]) -> str:
    """Stable identity for alerts that arrive without Alertmanager's fingerprint."""
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


def _text(value: str, where: str) -> str:
    """Text we can store and show: no NUL (PostgreSQL refuses it) and no lone UTF-16 surrogates."""
    if "\x00" in value:
        raise InvalidPayload(where, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(where, "is not valid Unicode (lone surrogate)") from exc
    return value


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidPayload(where, "must be a JSON object")
    return value


def _str(body: dict[str, Any], key: str, where: str) -> str:
    if key not in body:
        raise InvalidPayload(where, "required")
    value = body[key]
    if not isinstance(value, str):
        raise InvalidPayload(where, "must be a string")
    return _text(value, where)


def _opt_str(body: dict[str, Any], key: str, where: str) -> str:
    value = body.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidPayload(where, "must be a string")
    return _text(value, where)


def _status(value: Any, where: str) -> str:
    if value is None:
        raise InvalidPayload(where, "required")
    if value not in ("firing", "resolved"):
        raise InvalidPayload(where, f"must be \"firing\" or \"resolved\", not {str(value)[:40]!r}")
    return str(value)


def _labels(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload(where, "must be an object of string values")
    for key, item in value.items():
        if not isinstance(item, str):
            raise InvalidPayload(f"{where}.{key}", "must be a string")
        _text(key, f"{where} (a name)")
        _text(item, f"{where}.{key}")
    return dict(value)
