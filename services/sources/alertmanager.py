"""Prometheus Alertmanager webhook (payload version 4): a pure parse function, no I/O.

https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
"""

from __future__ import annotations

from typing import Any

from services.errors import InvalidPayload
from services.ingest_model import AlertBatch, IncomingAlert
from services.sources.common import (
    MAX_ALERTS_PER_PAYLOAD,
    MAX_YEAR,
    MIN_YEAR,
    alert_list,
    as_object,
    fingerprint_of,
    label_fingerprint,
    optional_str,
    parse_labels,
    parse_status,
    parse_time,
    required_str,
    truncated_count,
)

# Re-exported: callers and tests import these from here.
__all__ = ["MAX_ALERTS_PER_PAYLOAD", "MAX_YEAR", "MIN_YEAR", "label_fingerprint", "parse_alertmanager", "parse_time"]


def parse_alertmanager(payload: Any) -> AlertBatch:
    """Validate an Alertmanager v4 webhook body (already JSON-decoded) into an AlertBatch.

    Raises InvalidPayload naming the first offending field (``alerts[2].labels.alertname``)."""
    body = as_object(payload, "body")
    version = body.get("version")
    if version is None:
        raise InvalidPayload("version", "required (Alertmanager sends \"4\")")
    if str(version) != "4":
        raise InvalidPayload("version", f"unsupported version {version!r}; only \"4\" is accepted")
    receiver = required_str(body, "receiver", "receiver")
    group_key = required_str(body, "groupKey", "groupKey")
    status = parse_status(body.get("status"), "status")
    raw_alerts = alert_list(body.get("alerts"), "alerts")
    alerts = [_alert(raw, f"alerts[{i}]") for i, raw in enumerate(raw_alerts)]
    truncated = truncated_count(body, "truncatedAlerts")
    return AlertBatch(
        source="alertmanager",
        receiver=receiver,
        group_key=group_key,
        status=status,
        group_labels=parse_labels(body.get("groupLabels", {}), "groupLabels"),
        common_labels=parse_labels(body.get("commonLabels", {}), "commonLabels"),
        common_annotations=parse_labels(body.get("commonAnnotations", {}), "commonAnnotations"),
        external_url=optional_str(body, "externalURL", "externalURL"),
        truncated_alerts=truncated,
        alerts=alerts,
    )


def _alert(raw: Any, where: str) -> IncomingAlert:
    alert = as_object(raw, where)
    status = parse_status(alert.get("status"), f"{where}.status")
    if "labels" not in alert:
        raise InvalidPayload(f"{where}.labels", "required")
    labels = parse_labels(alert["labels"], f"{where}.labels")
    if not labels.get("alertname"):
        raise InvalidPayload(f"{where}.labels.alertname", "required")
    annotations = parse_labels(alert.get("annotations", {}), f"{where}.annotations")
    if "startsAt" not in alert:
        raise InvalidPayload(f"{where}.startsAt", "required")
    starts_at = parse_time(alert["startsAt"], f"{where}.startsAt")
    ends_at = parse_time(alert.get("endsAt"), f"{where}.endsAt")
    fingerprint = fingerprint_of(alert, labels, f"{where}.fingerprint")
    return IncomingAlert(
        fingerprint=fingerprint,
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=optional_str(alert, "generatorURL", f"{where}.generatorURL"),
    )
