"""Grafana unified alerting (Grafana 9+) webhook contact point: a pure parse function, no I/O.

Documented at https://grafana.com/docs/grafana/latest/alerting/ (configure-notifications/manage-contact-points/
integrations/webhook-notifier/); the payload struct is ExtendedData/ExtendedAlert in github.com/grafana/alerting
(templates/template_data.go) wrapped by receivers/webhook.

The body is Alertmanager's group notification extended by Grafana (``version`` "1"): ``receiver``, ``status``,
``alerts[]``, ``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL``, ``groupKey``,
``truncatedAlerts``, ``orgId``, and the deprecated ``title``/``state``/``message``. Each alert carries
``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt`` (Go's zero time "0001-01-01T00:00:00Z"
while firing), ``generatorURL``, ``fingerprint``, ``silenceURL``, ``dashboardURL``, ``panelURL``,
``values`` ({"B": 44.2}), ``valueString`` (deprecated) and ``imageURL``.

Mapping onto the source-neutral model (services/ingest_model.py):

* firing/resolved, labels, annotations, startsAt/endsAt, fingerprint: as for Alertmanager.
* ``silenceURL``/``dashboardURL``/``panelURL`` -> ``IncomingAlert.links`` {"silence", "dashboard", "panel"}:
  only non-empty http(s) URLs (a root-relative path is resolved against ``externalURL``); Grafana sends ""
  when a rule has no dashboard, and anything else (javascript:, garbage, > MAX_URL_CHARS) is dropped.
* ``generatorURL`` -> ``generator_url``, under the same http(s) rule.
* ``valueString`` -> ``annotations["grafana_values"]``, clipped to VALUES_CHARS, unless the rule already
  has an annotation of that name; when ``valueString`` is empty or absent (it is deprecated) the numeric
  ``values`` are written instead, as Grafana's own message shows them: "B=44.2, C=1".
* no ``labels.alertname`` (Grafana always sets it to the rule title): the alert's own ``title`` if a
  sender put one there, else "GrafanaAlert". The body's ``title`` is not used: it is the group's
  "[FIRING:2] ..." line, whose counts change from one notification to the next.
* no ``fingerprint``: a stable hash of the sorted labels (services.sources.common.label_fingerprint).
* no ``groupKey``: ``grafana/<receiver>:{name="value", ...}`` from the sorted ``groupLabels``.
* no body ``status``: "firing" if any alert fires, else "resolved"; no ``receiver``: "grafana";
  no ``startsAt``: unknown (None); no ``version``: accepted (anything other than "1" is refused).
* ``orgId``, ``title``, ``state``, ``message``, ``imageURL``, ``embeddedImage`` and per-alert ``orgId``
  are ignored.

Types are checked as strictly as for Alertmanager (every label and annotation a string, ``values`` numbers),
with the same limits (services.sources.common): a mistyped field is an InvalidPayload naming it.
"""

from __future__ import annotations

import json
from typing import Any

from services.errors import InvalidPayload
from services.ingest_model import AlertBatch, IncomingAlert
from services.sources.common import (
    alert_list,
    as_object,
    check_text,
    clip,
    fingerprint_of,
    http_link,
    optional_str,
    parse_labels,
    parse_status,
    parse_time,
    truncated_count,
)

SOURCE = "grafana"
PAYLOAD_VERSION = "1"
DEFAULT_RECEIVER = "grafana"
DEFAULT_ALERTNAME = "GrafanaAlert"
VALUES_ANNOTATION = "grafana_values"
VALUES_CHARS = 300
ALERTNAME_CHARS = 256
LINK_FIELDS = (("dashboard", "dashboardURL"), ("panel", "panelURL"), ("silence", "silenceURL"))
_LEGACY_KEYS = ("evalMatches", "ruleName", "ruleId", "ruleUrl")


def parse_grafana(payload: Any) -> AlertBatch:
    """Validate a Grafana unified alerting webhook body (already JSON-decoded) into an AlertBatch.

    Raises InvalidPayload naming the first offending field (``alerts[1].values.B``)."""
    body = as_object(payload, "body")
    version = body.get("version")
    if version is not None and str(version) != PAYLOAD_VERSION:
        raise InvalidPayload(
            "version",
            f"unsupported version {str(version)[:40]!r}; Grafana alerting sends \"1\" "
            "(Alertmanager's version \"4\" payloads go to the Alertmanager webhook)",
        )
    if "alerts" not in body and any(key in body for key in _LEGACY_KEYS):
        raise InvalidPayload("alerts", "required: this is a legacy Grafana (before 9) alert notification; "
                                       "only Grafana unified alerting webhooks are supported")
    receiver = optional_str(body, "receiver", "receiver") or DEFAULT_RECEIVER
    external_url = optional_str(body, "externalURL", "externalURL")
    raw_alerts = alert_list(body.get("alerts"), "alerts")
    alerts = [_alert(raw, f"alerts[{i}]", external_url) for i, raw in enumerate(raw_alerts)]
    if body.get("status") is None:
        status = "firing" if any(a.status == "firing" for a in alerts) else "resolved"
    else:
        status = parse_status(body["status"], "status")
    group_labels = parse_labels(body.get("groupLabels"), "groupLabels")
    group_key = optional_str(body, "groupKey", "groupKey") or derived_group_key(receiver, group_labels)
    return AlertBatch(
        source=SOURCE,
        receiver=receiver,
        group_key=group_key,
        status=status,
        group_labels=group_labels,
        common_labels=parse_labels(body.get("commonLabels"), "commonLabels"),
        common_annotations=parse_labels(body.get("commonAnnotations"), "commonAnnotations"),
        external_url=external_url,
        truncated_alerts=0 if body.get("truncatedAlerts") is None else truncated_count(body, "truncatedAlerts"),
        alerts=alerts,
    )


def derived_group_key(receiver: str, group_labels: dict[str, str]) -> str:
    """A stable group key for payloads without ``groupKey``: the receiver and the sorted group labels."""
    pairs = ",".join(f"{name}={json.dumps(group_labels[name], ensure_ascii=False)}" for name in sorted(group_labels))
    return f"grafana/{receiver}:{{{pairs}}}"


def _alert(raw: Any, where: str, external_url: str) -> IncomingAlert:
    alert = as_object(raw, where)
    status = parse_status(alert.get("status"), f"{where}.status")
    labels = parse_labels(alert.get("labels"), f"{where}.labels")
    if not labels.get("alertname"):
        labels["alertname"] = _fallback_alertname(alert, where)
    annotations = parse_labels(alert.get("annotations"), f"{where}.annotations")
    values = _values_text(alert, where)
    if values and VALUES_ANNOTATION not in annotations:
        annotations[VALUES_ANNOTATION] = values
    links: dict[str, str] = {}
    for name, key in LINK_FIELDS:
        link = http_link(optional_str(alert, key, f"{where}.{key}"), external_url)
        if link:
            links[name] = link
    return IncomingAlert(
        fingerprint=fingerprint_of(alert, labels, f"{where}.fingerprint"),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=parse_time(alert.get("startsAt"), f"{where}.startsAt"),
        ends_at=parse_time(alert.get("endsAt"), f"{where}.endsAt"),
        generator_url=http_link(optional_str(alert, "generatorURL", f"{where}.generatorURL"), external_url),
        links=links,
    )


def _fallback_alertname(alert: dict[str, Any], where: str) -> str:
    title = alert.get("title")
    if isinstance(title, str) and title.strip():
        return clip(check_text(title.strip(), f"{where}.title"), ALERTNAME_CHARS)
    return DEFAULT_ALERTNAME


def _values_text(alert: dict[str, Any], where: str) -> str:
    """``valueString`` ("[ var='B' labels={...} value=44.2 ]"), else the ``values`` map as "B=44.2, C=1"."""
    value_string = optional_str(alert, "valueString", f"{where}.valueString").strip()
    values = alert.get("values")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InvalidPayload(f"{where}.values", "must be an object of numbers")
    parts: list[str] = []
    size = 0
    for name, number in values.items():
        shown = _number(number, f"{where}.values.{name}")  # every value is checked, even when not shown
        if not value_string and size <= VALUES_CHARS:
            part = f"{check_text(name, f'{where}.values (a name)')}={shown}"
            parts.append(part)
            size += len(part) + 2
    return clip(value_string or ", ".join(parts), VALUES_CHARS)


def _number(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayload(where, "must be a number")
    if isinstance(value, int):
        if abs(value) > 10**21:
            raise InvalidPayload(where, "is out of range")
        return str(value)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)
