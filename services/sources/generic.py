"""Generic JSON alerts, for any tool that can POST JSON: a pure parse function and its JSON Schema, no I/O.

The body is one alert object, a list of them, or ``{"alerts": [...]}`` (an object with an ``alerts`` key is
always read as that wrapper). Each alert::

    {"title": "Checkout p99 above 2s",          # required; the alertname unless labels.alertname is set
     "severity": "critical",                    # optional, any short string; default "warning"
     "service": "checkout", "namespace": "shop",  # optional
     "status": "firing",                        # firing | resolved; default firing
     "labels": {"team": "payments"}, "annotations": {"runbook_url": "https://..."},
     "fingerprint": "...",                      # optional; derived from the labels when absent
     "starts_at": "2026-11-24T05:06:48Z", "ends_at": null,   # optional RFC 3339
     "description": "p99 latency is 2.4s", "url": "https://grafana.example/d/abc"}

Mapping onto the source-neutral model: ``labels`` is the base; ``alertname`` = labels.alertname or the title;
``service``, ``namespace`` and ``severity`` set the labels of those names (over ``labels``), severity
defaulting to labels.severity, then "warning"; ``annotations.summary`` defaults to the title;
``description`` sets ``annotations.description``; ``url`` (http/https only) becomes ``generator_url``.
A missing or empty fingerprint is a stable hash of the final labels (alertname, service, namespace and
severity included), as Alertmanager's would be. Unknown fields are ignored; null means absent.

Alerts are grouped into one AlertBatch per (alertname, service, namespace), in order of first appearance,
with group key ``generic:<alertname>/<service>/<namespace>`` ("%" and "/" inside a part are %-escaped), so a
batch is one incident group. GENERIC_SCHEMA (served at GET /webhooks/generic/schema) describes exactly
this; InvalidPayload names the field: ``alerts[2].title`` (wrapper), ``[2].title`` (list), ``title``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.errors import InvalidPayload
from services.ingest_model import AlertBatch, IncomingAlert
from services.sources.common import (
    MAX_ALERTS_PER_PAYLOAD,
    MAX_FINGERPRINT_CHARS,
    MAX_URL_CHARS,
    alert_list,
    as_object,
    check_text,
    fingerprint_of,
    is_http_url,
    parse_labels,
    parse_status,
    parse_time,
)

SOURCE = "generic"
DEFAULT_SEVERITY = "warning"
MAX_TITLE_CHARS = 256
MAX_SEVERITY_CHARS = 32
MAX_NAME_CHARS = 128  # service, namespace
REQUIRED_FIELDS = ("title",)


def parse_generic(payload: Any, *, receiver: str = "generic") -> list[AlertBatch]:
    """Validate a generic alert body (already JSON-decoded) into one AlertBatch per incident group.

    Raises InvalidPayload naming the first offending field (``alerts[2].title``)."""
    raw_alerts, prefix = _alerts_of(payload)
    alerts = [_alert(raw, prefix(i)) for i, raw in enumerate(raw_alerts)]
    groups: dict[tuple[str, str, str], list[IncomingAlert]] = {}
    for alert in alerts:
        key = (alert.alertname, alert.labels.get("service", ""), alert.labels.get("namespace", ""))
        groups.setdefault(key, []).append(alert)
    return [_batch(key, members, receiver) for key, members in groups.items()]


def group_key(alertname: str, service: str, namespace: str) -> str:
    parts = (p.replace("%", "%25").replace("/", "%2F") for p in (alertname, service, namespace))
    return "generic:" + "/".join(parts)


def _alerts_of(payload: Any) -> tuple[list[Any], Callable[[int], str]]:
    """The raw alerts and how to name the i-th one in errors, for each of the three body forms."""
    if isinstance(payload, list):
        return alert_list(payload, "body"), lambda i: f"[{i}]"
    body = as_object(payload, "body")
    if "alerts" in body:
        return alert_list(body["alerts"], "alerts"), lambda i: f"alerts[{i}]"
    return [body], lambda i: ""


def _field(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _short(alert: dict[str, Any], key: str, where: str, limit: int) -> str:
    """An optional short string, stripped; "" when absent, null or blank."""
    value = alert.get(key)
    if value is None:
        return ""
    name = _field(where, key)
    if not isinstance(value, str):
        raise InvalidPayload(name, "must be a string")
    if len(value) > limit:
        raise InvalidPayload(name, f"at most {limit} characters")
    return check_text(value, name).strip()


def _alert(raw: Any, where: str) -> IncomingAlert:
    alert = as_object(raw, where or "body")
    if alert.get("title") is None:
        raise InvalidPayload(_field(where, "title"), "required")
    title = _short(alert, "title", where, MAX_TITLE_CHARS)
    if not title:
        raise InvalidPayload(_field(where, "title"), "must not be blank")
    labels = parse_labels(alert.get("labels"), _field(where, "labels"))
    annotations = parse_labels(alert.get("annotations"), _field(where, "annotations"))
    labels["alertname"] = labels.get("alertname") or title
    for key in ("service", "namespace"):
        value = _short(alert, key, where, MAX_NAME_CHARS)
        if value:
            labels[key] = value
    severity = _short(alert, "severity", where, MAX_SEVERITY_CHARS)
    labels["severity"] = severity or labels.get("severity") or DEFAULT_SEVERITY
    annotations.setdefault("summary", title)
    description = alert.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise InvalidPayload(_field(where, "description"), "must be a string")
        if description.strip():
            annotations["description"] = check_text(description, _field(where, "description"))
    status = "firing" if alert.get("status") is None else parse_status(alert["status"], _field(where, "status"))
    fingerprint = alert.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise InvalidPayload(_field(where, "fingerprint"), "must be a string")
    return IncomingAlert(
        fingerprint=fingerprint_of(alert, labels, _field(where, "fingerprint")),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=parse_time(alert.get("starts_at"), _field(where, "starts_at")),
        ends_at=parse_time(alert.get("ends_at"), _field(where, "ends_at")),
        generator_url=_url(alert, where),
    )


def _url(alert: dict[str, Any], where: str) -> str:
    value = alert.get("url")
    if value is None or value == "":
        return ""
    name = _field(where, "url")
    if not isinstance(value, str):
        raise InvalidPayload(name, "must be a string")
    if len(value) > MAX_URL_CHARS:
        raise InvalidPayload(name, f"at most {MAX_URL_CHARS} characters")
    if not is_http_url(check_text(value, name)):
        raise InvalidPayload(name, "must be an http:// or https:// URL")
    return value


def _batch(key: tuple[str, str, str], alerts: list[IncomingAlert], receiver: str) -> AlertBatch:
    alertname, service, namespace = key
    return AlertBatch(
        source=SOURCE,
        receiver=receiver,
        group_key=group_key(alertname, service, namespace),
        status="firing" if any(a.status == "firing" for a in alerts) else "resolved",
        alerts=alerts,
        group_labels={k: v for k, v in (("alertname", alertname), ("service", service), ("namespace", namespace)) if v},
        common_labels=_common([a.labels for a in alerts]),
        common_annotations=_common([a.annotations for a in alerts]),
    )


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


# --- the JSON Schema of the body (served at GET /webhooks/generic/schema) ------------------------------------

_NULLABLE_STRING_MAP = {
    "type": ["object", "null"],
    "additionalProperties": {"type": "string"},
}

_EXAMPLE_ALERT = {
    "title": "Checkout p99 latency above 2s",
    "severity": "critical",
    "service": "checkout",
    "namespace": "shop",
    "status": "firing",
    "labels": {"team": "payments", "env": "prod"},
    "annotations": {"runbook_url": "https://runbooks.example/checkout-latency"},
    "fingerprint": "checkout-p99/shop",
    "starts_at": "2026-11-24T05:06:48Z",
    "ends_at": None,
    "description": "p99 latency of POST /checkout is 2.4s over the last 5 minutes.",
    "url": "https://grafana.example/d/checkout?viewPanel=4",
}

GENERIC_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "alertpilot generic alert webhook",
    "description": (
        "POST /webhooks/generic accepts one alert object, a list of alert objects, or an object "
        "{\"alerts\": [...]} (an object with an \"alerts\" key is always read as that wrapper). "
        f"At most {MAX_ALERTS_PER_PAYLOAD} alerts per request. Alerts are grouped into one incident group per "
        "(alertname, service, namespace). Unknown fields are ignored; null means absent. Text must not contain "
        "NUL characters."
    ),
    "anyOf": [
        {"$ref": "#/$defs/alert", "not": {"required": ["alerts"]}},
        {"$ref": "#/$defs/alertList"},
        {
            "type": "object",
            "description": "A wrapper object holding the alerts.",
            "required": ["alerts"],
            "properties": {"alerts": {"$ref": "#/$defs/alertList"}},
        },
    ],
    "$defs": {
        "alertList": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ALERTS_PER_PAYLOAD,
            "items": {"$ref": "#/$defs/alert"},
        },
        "alert": {
            "type": "object",
            "description": "One alert. Only title is required.",
            "required": list(REQUIRED_FIELDS),
            "properties": {
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TITLE_CHARS,
                    "pattern": "\\S",
                    "description": "What is wrong, in one line. The alertname unless labels.alertname is set, "
                    "and annotations.summary unless that is set.",
                },
                "severity": {
                    "type": ["string", "null"],
                    "maxLength": MAX_SEVERITY_CHARS,
                    "description": "critical, warning, info or any short word; sets labels.severity. "
                    f"Default: labels.severity, else \"{DEFAULT_SEVERITY}\".",
                    "examples": ["critical", "warning", "info"],
                },
                "service": {
                    "type": ["string", "null"],
                    "maxLength": MAX_NAME_CHARS,
                    "description": "The affected service; sets labels.service and is part of the incident group.",
                },
                "namespace": {
                    "type": ["string", "null"],
                    "maxLength": MAX_NAME_CHARS,
                    "description": "The Kubernetes namespace (or environment); sets labels.namespace and is part "
                    "of the incident group.",
                },
                "status": {
                    "enum": ["firing", "resolved", None],
                    "description": "\"resolved\" ends the alert with the same fingerprint. Default: \"firing\".",
                },
                "labels": {
                    **_NULLABLE_STRING_MAP,
                    "description": "Identifying labels (string values). With title/service/namespace/severity "
                    "they make the derived fingerprint.",
                },
                "annotations": {
                    **_NULLABLE_STRING_MAP,
                    "description": "Descriptive annotations (string values), such as runbook_url.",
                },
                "fingerprint": {
                    "type": ["string", "null"],
                    "maxLength": MAX_FINGERPRINT_CHARS,
                    "description": "A stable identity for the alert, so a later \"resolved\" finds it. Default: "
                    "a hash of the labels (including alertname, service, namespace and severity).",
                },
                "starts_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "RFC 3339 time the problem began, e.g. 2026-11-24T05:06:48Z (years 1970-2200).",
                },
                "ends_at": {
                    "type": ["string", "null"],
                    "format": "date-time",
                    "description": "RFC 3339 time the problem ended, for resolved alerts (years 1970-2200).",
                },
                "description": {
                    "type": ["string", "null"],
                    "description": "Longer text; sets annotations.description.",
                },
                "url": {
                    "type": ["string", "null"],
                    "maxLength": MAX_URL_CHARS,
                    "pattern": "^$|^[Hh][Tt][Tt][Pp][Ss]?://[^\\s/?#]+[^\\s]*$",
                    "description": "An http(s) link to the source of the alert (a graph, a check, a job run).",
                },
            },
        },
    },
    "examples": [
        _EXAMPLE_ALERT,
        [
            {"title": "Disk almost full", "severity": "warning", "service": "db", "labels": {"instance": "db-1"}},
            {"title": "Disk almost full", "severity": "warning", "service": "db", "labels": {"instance": "db-2"},
             "status": "resolved", "ends_at": "2026-11-24T05:20:00Z"},
        ],
        {"alerts": [{"title": "Nightly backup failed", "service": "backup", "severity": "critical",
                     "fingerprint": "backup-nightly"}]},
    ],
}
