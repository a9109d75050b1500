"""services/sources/alertmanager.py: parse_alertmanager and parse_time (pure, no I/O)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.errors import InvalidPayload
from services.sources.alertmanager import parse_alertmanager, parse_time
from tests.unit.mutate import del_at, set_at

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "alertmanager"
GROUP_KEY = '{}:{alertname="DiskFull"}'
FP1, FP2 = "b05e07d6656f414d", "228efb633186ea1c"
STARTS = datetime(2026, 11, 24, 5, 6, 48, tzinfo=UTC)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def valid_body() -> dict[str, Any]:
    return copy.deepcopy(fixture("02-firing-two-alerts.json"))


# --- the real Alertmanager fixtures ----------------------------------------------------------


def test_alertmanager_fixtures_directory_holds_four_payloads() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == [
        "01-firing-one-alert.json",
        "02-firing-two-alerts.json",
        "03-firing-one-resolved.json",
        "04-resolved.json",
    ]


@pytest.mark.parametrize(
    ("name", "status", "alerts"),
    [
        ("01-firing-one-alert.json", "firing", [(FP1, "firing", "db-1", None)]),
        ("02-firing-two-alerts.json", "firing", [(FP1, "firing", "db-1", None), (FP2, "firing", "db-2", None)]),
        (
            "03-firing-one-resolved.json",
            "firing",
            [(FP1, "resolved", "db-1", STARTS + timedelta(seconds=6)), (FP2, "firing", "db-2", None)],
        ),
        ("04-resolved.json", "resolved", [(FP2, "resolved", "db-2", STARTS + timedelta(seconds=9))]),
    ],
)
def test_parse_alertmanager_real_fixtures(name: str, status: str, alerts: list[tuple[Any, ...]]) -> None:
    batch = parse_alertmanager(fixture(name))

    assert batch.source == "alertmanager"
    assert batch.receiver == "webhook"
    assert batch.group_key == GROUP_KEY
    assert batch.status == status
    assert batch.external_url == "http://127.0.0.1:9093"
    assert batch.truncated_alerts == 0
    assert batch.group_labels == {"alertname": "DiskFull"}
    assert batch.common_labels["alertname"] == "DiskFull"
    assert batch.common_annotations["summary"] == "Disk almost full"
    assert len(batch.alerts) == len(alerts)
    for parsed, (fingerprint, alert_status, instance, ends_at) in zip(batch.alerts, alerts, strict=True):
        assert parsed.fingerprint == fingerprint
        assert parsed.status == alert_status
        assert parsed.alertname == "DiskFull"
        assert parsed.labels["instance"] == instance
        assert parsed.labels["severity"] == "critical"
        assert parsed.annotations["summary"] == "Disk almost full"
        assert parsed.starts_at == STARTS
        assert parsed.starts_at.tzinfo is not None
        assert parsed.ends_at == ends_at  # Go's zero time "0001-01-01T00:00:00Z" means "not set"
        assert parsed.generator_url == "http://prometheus.example/graph?g0.expr=disk_used"


def test_parse_alertmanager_accepts_integer_version() -> None:
    body = valid_body()
    body["version"] = 4
    assert len(parse_alertmanager(body).alerts) == 2


# --- errors name the culprit ------------------------------------------------------------------


def _drop(key: str) -> Any:
    def mutate(body: dict[str, Any]) -> Any:
        del body[key]
        return body

    return mutate


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(_drop("version"), "version", id="missing-version"),
        pytest.param(set_at(("version",), "3"), "version", id="version-3"),
        pytest.param(_drop("receiver"), "receiver", id="missing-receiver"),
        pytest.param(set_at(("receiver",), 7), "receiver", id="receiver-not-string"),
        pytest.param(_drop("groupKey"), "groupKey", id="missing-groupKey"),
        pytest.param(_drop("status"), "status", id="missing-status"),
        pytest.param(_drop("alerts"), "alerts", id="missing-alerts"),
        pytest.param(set_at(("alerts",), {"0": {}}), "alerts", id="alerts-not-a-list"),
        pytest.param(set_at(("alerts",), []), "alerts", id="alerts-empty"),
        pytest.param(del_at(("alerts", 1, "labels")), "alerts[1].labels", id="labels-missing"),
        pytest.param(del_at(("alerts", 0, "labels", "alertname")), "alerts[0].labels.alertname", id="alertname-missing"),
        pytest.param(set_at(("alerts", 0, "labels", "alertname"), ""), "alerts[0].labels.alertname", id="alertname-empty"),
        pytest.param(set_at(("alerts", 0, "labels", "severity"), 3), "alerts[0].labels.severity", id="label-is-number"),
        pytest.param(set_at(("alerts", 0, "startsAt"), "yesterday"), "alerts[0].startsAt", id="bad-startsAt"),
        pytest.param(set_at(("alerts", 0, "startsAt"), "2026-13-45T05:06:48Z"), "alerts[0].startsAt", id="impossible-date"),
        pytest.param(del_at(("alerts", 0, "startsAt")), "alerts[0].startsAt", id="missing-startsAt"),
        pytest.param(set_at(("alerts", 1, "endsAt"), 12345), "alerts[1].endsAt", id="endsAt-not-string"),
        pytest.param(set_at(("alerts", 1, "status"), "pending"), "alerts[1].status", id="alert-status-pending"),
        pytest.param(set_at(("status",), "pending"), "status", id="group-status-pending"),
        pytest.param(set_at(("alerts", 0), "not an object"), "alerts[0]", id="alert-not-object"),
        pytest.param(set_at(("truncatedAlerts",), -1), "truncatedAlerts", id="negative-truncated"),
        pytest.param(set_at(("alerts", 0, "fingerprint"), 42), "alerts[0].fingerprint", id="fingerprint-number"),
        pytest.param(set_at(("commonLabels",), ["x"]), "commonLabels", id="commonLabels-list"),
        pytest.param(lambda body: [body], "body", id="body-is-a-list"),
    ],
)
def test_parse_alertmanager_error_names_field(mutate: Any, field: str) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_alertmanager(mutate(valid_body()))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("body", [None, "text", 4, [], [{"version": "4"}]])
def test_parse_alertmanager_non_object_body_is_invalid(body: Any) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_alertmanager(body)
    assert caught.value.field == "body"


# --- parse_time -------------------------------------------------------------------------------


def test_parse_time_nanoseconds_are_truncated_to_microseconds() -> None:
    parsed = parse_time("2026-11-24T05:06:48.123456789Z", "t")
    assert parsed == datetime(2026, 11, 24, 5, 6, 48, 123456, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_parse_time_offset_converts_to_utc() -> None:
    parsed = parse_time("2026-11-24T13:06:48+08:00", "t")
    assert parsed == datetime(2026, 11, 24, 5, 6, 48, tzinfo=UTC)
    assert parsed is not None and parsed.tzinfo is UTC


def test_parse_time_negative_offset_and_fraction() -> None:
    parsed = parse_time("2026-11-23T23:36:48.5-05:30", "t")
    assert parsed == datetime(2026, 11, 24, 5, 6, 48, 500000, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, "", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000000Z"])
def test_parse_time_unset_values_are_none(value: Any) -> None:
    assert parse_time(value, "t") is None


@pytest.mark.parametrize(
    "value", ["2026-11-24", "2026-11-24T05:06:48", "24/11/2026 05:06", "2026-11-24T25:06:48Z", "now", 1732424808]
)
def test_parse_time_rejects_non_rfc3339(value: Any) -> None:
    with pytest.raises(InvalidPayload) as caught:
        parse_time(value, "alerts[3].startsAt")
    assert caught.value.field == "alerts[3].startsAt"


# --- computed fingerprints ------------------------------------------------------------------


def test_parse_alertmanager_missing_fingerprint_is_computed_and_stable() -> None:
    body = valid_body()
    for alert in body["alerts"]:
        del alert["fingerprint"]
    first = parse_alertmanager(copy.deepcopy(body))
    second = parse_alertmanager(copy.deepcopy(body))

    fps = [a.fingerprint for a in first.alerts]
    assert fps == [a.fingerprint for a in second.alerts]
    assert all(isinstance(fp, str) and 0 < len(fp) <= 128 for fp in fps)
    assert fps[0] != fps[1]  # labels differ (instance db-1 vs db-2)


def test_parse_alertmanager_computed_fingerprint_ignores_label_order() -> None:
    body = valid_body()
    del body["alerts"][0]["fingerprint"]
    reordered = copy.deepcopy(body)
    reordered["alerts"][0]["labels"] = dict(reversed(list(body["alerts"][0]["labels"].items())))
    assert parse_alertmanager(body).alerts[0].fingerprint == parse_alertmanager(reordered).alerts[0].fingerprint


def test_parse_alertmanager_computed_fingerprint_depends_on_labels_only() -> None:
    body = valid_body()
    del body["alerts"][0]["fingerprint"]
    other = copy.deepcopy(body)
    other["alerts"][0]["annotations"]["summary"] = "something else"
    other["alerts"][0]["status"] = "resolved"
    assert parse_alertmanager(body).alerts[0].fingerprint == parse_alertmanager(other).alerts[0].fingerprint
    other["alerts"][0]["labels"]["severity"] = "warning"
    assert parse_alertmanager(body).alerts[0].fingerprint != parse_alertmanager(other).alerts[0].fingerprint


def test_parse_alertmanager_empty_fingerprint_is_computed() -> None:
    body = valid_body()
    body["alerts"][0]["fingerprint"] = ""
    assert parse_alertmanager(body).alerts[0].fingerprint not in ("", FP1)
