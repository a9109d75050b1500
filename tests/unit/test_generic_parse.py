"""services/sources/generic.py: parse_generic (pure, no I/O) and GENERIC_SCHEMA, the JSON Schema it is served
with. A small draft 2020-12 validator below checks the schema's examples and that the schema and the parser
agree (the keywords it does not know are refused, so it cannot silently skip a constraint)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import InvalidPayload
from services.sources.common import MAX_ALERTS_PER_PAYLOAD, MAX_URL_CHARS, label_fingerprint
from services.sources.generic import (
    GENERIC_SCHEMA,
    MAX_NAME_CHARS,
    MAX_SEVERITY_CHARS,
    MAX_TITLE_CHARS,
    group_key,
    parse_generic,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "generic"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def one() -> dict[str, Any]:
    return fixture("one.json")


def parse_one(alert: dict[str, Any]) -> Any:
    [batch] = parse_generic(alert)
    [parsed] = batch.alerts
    return parsed


# --- the fixtures, field by field -----------------------------------------------------------------------------


def test_parse_generic_one_maps_every_field() -> None:
    [batch] = parse_generic(one())

    assert batch.source == "generic"
    assert batch.receiver == "generic"
    assert batch.group_key == "generic:Checkout p99 latency above 2s/checkout/shop"
    assert batch.status == "firing"
    assert batch.group_labels == {
        "alertname": "Checkout p99 latency above 2s", "service": "checkout", "namespace": "shop"
    }
    assert batch.external_url == "" and batch.truncated_alerts == 0
    [alert] = batch.alerts
    assert alert.labels == {
        "team": "payments",
        "env": "prod",
        "alertname": "Checkout p99 latency above 2s",
        "service": "checkout",
        "namespace": "shop",
        "severity": "critical",
    }
    assert alert.annotations == {
        "runbook_url": "https://runbooks.example.com/checkout-latency",
        "summary": "Checkout p99 latency above 2s",
        "description": "p99 latency of POST /checkout is 2.4s over the last 5 minutes.",
    }
    assert alert.status == "firing"
    assert alert.starts_at == datetime(2026, 11, 24, 5, 6, 48, tzinfo=UTC)  # sent as 13:06:48+08:00
    assert alert.ends_at is None
    assert alert.generator_url == "https://ci.example.com/checks/checkout-latency/runs/1842"
    assert alert.links == {}
    assert alert.fingerprint == label_fingerprint(alert.labels)
    assert batch.common_labels == alert.labels and batch.common_annotations == alert.annotations


def test_parse_generic_list_groups_by_alertname_service_namespace() -> None:
    batches = parse_generic(fixture("list.json"))

    assert [b.group_key for b in batches] == [
        "generic:Disk almost full/db/data",
        "generic:Nightly backup failed/backup/",
    ]
    disk, backup = batches
    assert [a.labels["instance"] for a in disk.alerts] == ["db-1", "db-2"]
    assert [a.status for a in disk.alerts] == ["firing", "resolved"]
    assert disk.status == "firing"
    assert disk.alerts[1].ends_at == datetime(2026, 11, 24, 5, 20, tzinfo=UTC)
    assert disk.common_labels == {
        "alertname": "Disk almost full", "service": "db", "namespace": "data", "severity": "warning"
    }
    assert disk.group_labels == {"alertname": "Disk almost full", "service": "db", "namespace": "data"}
    assert disk.alerts[0].fingerprint != disk.alerts[1].fingerprint
    [job] = backup.alerts
    assert backup.group_labels == {"alertname": "Nightly backup failed", "service": "backup"}
    assert job.fingerprint == "backup-nightly-2026-11-24"
    assert job.labels["severity"] == "warning"  # the default
    assert job.annotations["description"] == "pg_dump exited with status 1"
    assert job.generator_url == "http://jenkins.example.com/job/backup/412/"
    assert job.starts_at is None and job.ends_at is None


def test_parse_generic_wrapper_is_the_same_as_a_list() -> None:
    alerts = fixture("list.json")
    assert parse_generic({"alerts": alerts}) == parse_generic(alerts)


def test_parse_generic_receiver_is_passed_through() -> None:
    assert {b.receiver for b in parse_generic(fixture("list.json"), receiver="ci")} == {"ci"}


def test_parse_generic_all_resolved_batch_is_resolved() -> None:
    alert = {**one(), "status": "resolved", "ends_at": "2026-11-24T06:00:00Z"}
    [batch] = parse_generic([alert])
    assert batch.status == "resolved"
    assert batch.alerts[0].ends_at == datetime(2026, 11, 24, 6, tzinfo=UTC)


def test_parse_generic_minimal_alert_defaults() -> None:
    [batch] = parse_generic({"title": "Something broke"})
    [alert] = batch.alerts
    assert batch.group_key == "generic:Something broke//"
    assert batch.group_labels == {"alertname": "Something broke"}
    assert alert.labels == {"alertname": "Something broke", "severity": "warning"}
    assert alert.annotations == {"summary": "Something broke"}
    assert alert.status == "firing"
    assert alert.starts_at is None and alert.ends_at is None and alert.generator_url == ""


def test_parse_generic_nulls_mean_absent() -> None:
    nulls = {key: None for key in ("severity", "service", "namespace", "status", "labels", "annotations",
                                   "fingerprint", "starts_at", "ends_at", "description", "url")}
    assert parse_generic({"title": "Something broke", **nulls}) == parse_generic({"title": "Something broke"})


# --- mapping rules --------------------------------------------------------------------------------------------


def test_parse_generic_alertname_from_labels_title_becomes_summary() -> None:
    alert = parse_one({"title": "Checkout is slow", "labels": {"alertname": "CheckoutLatency"}})
    assert alert.alertname == "CheckoutLatency"
    assert alert.annotations["summary"] == "Checkout is slow"


def test_parse_generic_title_is_stripped_and_summary_annotation_wins() -> None:
    alert = parse_one({"title": "  Slow  ", "annotations": {"summary": "Checkout p99 above 2s"}})
    assert alert.alertname == "Slow"
    assert alert.annotations["summary"] == "Checkout p99 above 2s"


def test_parse_generic_top_level_fields_override_labels() -> None:
    alert = parse_one({
        "title": "t",
        "service": "checkout",
        "namespace": "shop",
        "severity": "info",
        "description": "top",
        "labels": {"service": "old", "namespace": "old", "severity": "critical"},
        "annotations": {"description": "old"},
    })
    labels = alert.labels
    assert (labels["service"], labels["namespace"], labels["severity"]) == ("checkout", "shop", "info")
    assert alert.annotations["description"] == "top"


def test_parse_generic_labels_used_when_top_level_fields_absent() -> None:
    [batch] = parse_generic({"title": "t", "labels": {"service": "db", "namespace": "data", "severity": "critical"}})
    assert batch.group_key == "generic:t/db/data"
    assert batch.alerts[0].labels["severity"] == "critical"


@pytest.mark.parametrize("severity", ["", "   "])
def test_parse_generic_blank_severity_is_the_default(severity: str) -> None:
    assert parse_one({"title": "t", "severity": severity}).labels["severity"] == "warning"


def test_parse_generic_severity_any_short_string_kept() -> None:
    assert parse_one({"title": "t", "severity": "P1"}).labels["severity"] == "P1"


def test_parse_generic_blank_description_is_ignored() -> None:
    alert = parse_one({"title": "t", "description": "  ", "annotations": {"description": "kept"}})
    assert alert.annotations["description"] == "kept"


@pytest.mark.parametrize("url", ["http://a.example", "https://a.example/x?y=1#z", "HTTPS://A.EXAMPLE/"])
def test_parse_generic_http_url_is_generator_url(url: str) -> None:
    assert parse_one({"title": "t", "url": url}).generator_url == url


def test_parse_generic_empty_url_is_absent() -> None:
    assert parse_one({"title": "t", "url": ""}).generator_url == ""


def test_group_key_escapes_separators() -> None:
    assert group_key("a/b", "", "c") != group_key("a", "b", "c")
    assert group_key("a/b", "50%", "") == "generic:a%2Fb/50%25/"


def test_parse_generic_groups_keep_first_appearance_order() -> None:
    body = [{"title": "B"}, {"title": "A"}, {"title": "B", "labels": {"x": "1"}}, {"title": "A", "service": "s"}]
    batches = parse_generic(body)
    assert [b.group_key for b in batches] == ["generic:B//", "generic:A//", "generic:A/s/"]
    assert [len(b.alerts) for b in batches] == [2, 1, 1]
    assert batches[0].common_labels == {"alertname": "B", "severity": "warning"}


# --- fingerprints -----------------------------------------------------------------------------------------------


def test_parse_generic_derived_fingerprint_is_stable_and_order_free() -> None:
    body = one()
    reordered = copy.deepcopy(body)
    reordered["labels"] = dict(reversed(list(body["labels"].items())))
    changed = {**copy.deepcopy(body), "status": "resolved", "description": "other", "url": "https://b.example",
               "annotations": {}, "starts_at": None}
    fps = {parse_one(b).fingerprint for b in (body, copy.deepcopy(body), reordered, changed)}
    assert len(fps) == 1


@pytest.mark.parametrize(
    "change",
    [{"title": "other"}, {"service": "other"}, {"namespace": "other"}, {"severity": "warning"},
     {"labels": {"team": "other", "env": "prod"}}],
)
def test_parse_generic_derived_fingerprint_depends_on_identity(change: dict[str, Any]) -> None:
    assert parse_one(one()).fingerprint != parse_one({**one(), **change}).fingerprint


def test_parse_generic_given_fingerprint_is_used_and_empty_is_derived() -> None:
    assert parse_one({**one(), "fingerprint": "abc"}).fingerprint == "abc"
    assert parse_one({**one(), "fingerprint": ""}).fingerprint == parse_one(one()).fingerprint


# --- errors name the field ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        pytest.param({"severity": "critical"}, "title", id="title-missing"),
        pytest.param({"title": None}, "title", id="title-null"),
        pytest.param({"title": ""}, "title", id="title-empty"),
        pytest.param({"title": " \n\t"}, "title", id="title-blank"),
        pytest.param({"title": 5}, "title", id="title-number"),
        pytest.param({"title": "t" * (MAX_TITLE_CHARS + 1)}, "title", id="title-long"),
        pytest.param({"title": "a\x00b"}, "title", id="title-nul"),
        pytest.param({"title": "t", "severity": 1}, "severity", id="severity-number"),
        pytest.param({"title": "t", "severity": "s" * (MAX_SEVERITY_CHARS + 1)}, "severity", id="severity-long"),
        pytest.param({"title": "t", "service": ["a"]}, "service", id="service-list"),
        pytest.param({"title": "t", "service": "s" * (MAX_NAME_CHARS + 1)}, "service", id="service-long"),
        pytest.param({"title": "t", "namespace": "n" * (MAX_NAME_CHARS + 1)}, "namespace", id="namespace-long"),
        pytest.param({"title": "t", "labels": ["a"]}, "labels", id="labels-list"),
        pytest.param({"title": "t", "labels": {"team": 1}}, "labels.team", id="label-number"),
        pytest.param({"title": "t", "annotations": {"x": None}}, "annotations.x", id="annotation-null"),
        pytest.param({"title": "t", "status": "pending"}, "status", id="status-pending"),
        pytest.param({"title": "t", "status": 1}, "status", id="status-number"),
        pytest.param({"title": "t", "fingerprint": 42}, "fingerprint", id="fingerprint-number"),
        pytest.param({"title": "t", "fingerprint": False}, "fingerprint", id="fingerprint-false"),
        pytest.param({"title": "t", "fingerprint": "f" * 129}, "fingerprint", id="fingerprint-long"),
        pytest.param({"title": "t", "starts_at": "yesterday"}, "starts_at", id="starts-at-text"),
        pytest.param({"title": "t", "starts_at": 1732424808}, "starts_at", id="starts-at-number"),
        pytest.param({"title": "t", "ends_at": "2026-11-24T05:06:48"}, "ends_at", id="ends-at-no-zone"),
        pytest.param({"title": "t", "ends_at": "2300-01-01T00:00:00Z"}, "ends_at", id="ends-at-out-of-range"),
        pytest.param({"title": "t", "description": 3}, "description", id="description-number"),
        pytest.param({"title": "t", "url": 3}, "url", id="url-number"),
        pytest.param({"title": "t", "url": "javascript:alert(1)"}, "url", id="url-javascript"),
        pytest.param({"title": "t", "url": "ftp://files.example"}, "url", id="url-ftp"),
        pytest.param({"title": "t", "url": "runbooks.example/x"}, "url", id="url-no-scheme"),
        pytest.param({"title": "t", "url": "https://"}, "url", id="url-no-host"),
        pytest.param({"title": "t", "url": "https://a.example/" + "x" * MAX_URL_CHARS}, "url", id="url-long"),
    ],
)
def test_parse_generic_error_names_field(alert: dict[str, Any], field: str) -> None:
    for body, name in ((alert, field), ([{"title": "ok"}, {"title": "ok"}, alert], f"[2].{field}"),
                       ({"alerts": [{"title": "ok"}, {"title": "ok"}, alert]}, f"alerts[2].{field}")):
        with pytest.raises(InvalidPayload) as caught:
            parse_generic(body)
        assert caught.value.field == name
        assert str(caught.value).startswith(f"{name}: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(None, "body", id="null"),
        pytest.param("text", "body", id="string"),
        pytest.param(3, "body", id="number"),
        pytest.param([], "body", id="empty-list"),
        pytest.param(["x"], "[0]", id="list-of-string"),
        pytest.param({"alerts": None}, "alerts", id="alerts-null"),
        pytest.param({"alerts": []}, "alerts", id="alerts-empty"),
        pytest.param({"alerts": {"title": "t"}}, "alerts", id="alerts-object"),
        pytest.param({"alerts": [{"title": "t"}, 7]}, "alerts[1]", id="alert-number"),
        pytest.param({"alerts": [{"title": "t"}], "title": "ignored"}, None, id="wrapper-wins"),
    ],
)
def test_parse_generic_body_shape_errors(body: Any, field: str | None) -> None:
    if field is None:
        assert len(parse_generic(body)) == 1
        return
    with pytest.raises(InvalidPayload) as caught:
        parse_generic(body)
    assert caught.value.field == field


def test_parse_generic_alert_count_limit() -> None:
    body = [{"title": "t", "labels": {"i": str(i)}} for i in range(MAX_ALERTS_PER_PAYLOAD)]
    assert len(parse_generic(body)[0].alerts) == MAX_ALERTS_PER_PAYLOAD
    with pytest.raises(InvalidPayload) as caught:
        parse_generic({"alerts": [*body, {"title": "one too many"}]})
    assert caught.value.field == "alerts"


def test_parse_generic_limits_are_inclusive() -> None:
    alert = parse_one({"title": "t" * MAX_TITLE_CHARS, "severity": "s" * MAX_SEVERITY_CHARS,
                       "service": "v" * MAX_NAME_CHARS, "namespace": "n" * MAX_NAME_CHARS,
                       "fingerprint": "f" * 128, "url": "https://a.example/" + "x" * (MAX_URL_CHARS - 18)})
    assert alert.fingerprint == "f" * 128 and len(alert.generator_url) == MAX_URL_CHARS


# --- the JSON Schema ----------------------------------------------------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
_ANNOTATIONS = {"$schema", "title", "description", "examples", "format", "default"}  # assert nothing
_ASSERTIONS = {"$ref", "$defs", "anyOf", "not", "type", "enum", "required", "properties", "additionalProperties",
               "items", "minItems", "maxItems", "minLength", "maxLength", "pattern"}


def valid(instance: Any, schema: dict[str, Any], root: dict[str, Any] = GENERIC_SCHEMA) -> bool:
    """The subset of JSON Schema 2020-12 that GENERIC_SCHEMA uses ("format" is an annotation by default)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        if not valid(instance, root["$defs"][name], root):
            return False
    if "anyOf" in schema and not any(valid(instance, s, root) for s in schema["anyOf"]):
        return False
    if "not" in schema and valid(instance, schema["not"], root):
        return False
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](instance) for t in types):
            return False
    if "enum" in schema and not any(instance == e and type(instance) is type(e) for e in schema["enum"]):
        return False
    if isinstance(instance, dict):
        if any(key not in instance for key in schema.get("required", [])):
            return False
        for key, item in instance.items():
            if key in schema.get("properties", {}):
                if not valid(item, schema["properties"][key], root):
                    return False
            elif isinstance(schema.get("additionalProperties"), dict) and not valid(
                item, schema["additionalProperties"], root
            ):
                return False
    if isinstance(instance, list):
        if not schema.get("minItems", 0) <= len(instance) <= schema.get("maxItems", len(instance)):
            return False
        if "items" in schema and not all(valid(item, schema["items"], root) for item in instance):
            return False
    if isinstance(instance, str):
        if not schema.get("minLength", 0) <= len(instance) <= schema.get("maxLength", len(instance)):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            return False
    return True


def _keywords(schema: Any) -> set[str]:
    if isinstance(schema, list):
        return set().union(*(_keywords(s) for s in schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            found |= _keywords(list(value.values()))
        elif key not in ("examples", "enum", "required", "description", "title", "default"):
            found |= _keywords(value)
    return found


def test_generic_schema_is_draft_2020_12_json_with_known_keywords_only() -> None:
    assert GENERIC_SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert json.loads(json.dumps(GENERIC_SCHEMA)) == GENERIC_SCHEMA
    assert _keywords(GENERIC_SCHEMA) <= _ASSERTIONS | _ANNOTATIONS
    for name, prop in GENERIC_SCHEMA["$defs"]["alert"]["properties"].items():
        assert prop.get("description"), name


def test_generic_schema_every_example_is_valid_and_parses() -> None:
    examples = GENERIC_SCHEMA["examples"]
    assert len(examples) == 3  # one alert, a list, the wrapper
    assert isinstance(examples[0], dict) and isinstance(examples[1], list) and "alerts" in examples[2]
    for example in examples:
        assert valid(example, GENERIC_SCHEMA)
        assert parse_generic(copy.deepcopy(example))


@pytest.mark.parametrize("name", ["one.json", "list.json"])
def test_generic_fixtures_are_schema_valid(name: str) -> None:
    assert valid(fixture(name), GENERIC_SCHEMA)


def test_generic_schema_required_fields_match_the_parser() -> None:
    alert_schema = GENERIC_SCHEMA["$defs"]["alert"]
    full = GENERIC_SCHEMA["examples"][0]
    assert set(full) == set(alert_schema["properties"])  # the example exercises every documented field
    for name in alert_schema["properties"]:
        partial = {k: v for k, v in full.items() if k != name}
        schema_ok = valid(partial, GENERIC_SCHEMA)
        try:
            parse_generic(partial)
            parser_ok = True
        except InvalidPayload as exc:
            assert exc.field == name
            parser_ok = False
        assert schema_ok == parser_ok == (name not in alert_schema["required"]), name
    assert alert_schema["required"] == ["title"]
    wrapper = GENERIC_SCHEMA["anyOf"][2]
    assert wrapper["required"] == ["alerts"]
    assert not valid({"alerts": None}, GENERIC_SCHEMA)
    with pytest.raises(InvalidPayload):
        parse_generic({"alerts": None})


def test_generic_schema_limits_match_the_parser() -> None:
    props = GENERIC_SCHEMA["$defs"]["alert"]["properties"]
    assert props["title"]["maxLength"] == MAX_TITLE_CHARS
    assert props["severity"]["maxLength"] == MAX_SEVERITY_CHARS
    assert props["service"]["maxLength"] == props["namespace"]["maxLength"] == MAX_NAME_CHARS
    assert props["fingerprint"]["maxLength"] == 128
    assert props["url"]["maxLength"] == MAX_URL_CHARS
    assert GENERIC_SCHEMA["$defs"]["alertList"]["maxItems"] == MAX_ALERTS_PER_PAYLOAD


# --- properties -------------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, deadline=None)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["firing", "resolved", "", " ", "2026-11-24T05:06:48Z", "0001-01-01T00:00:00Z",
                     "https://a.example/x", "javascript:x", "title", "alerts", "\x00", "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from([*GENERIC_SCHEMA["$defs"]["alert"]["properties"],
                                                             "alerts", "x"]) | st.text(max_size=8),
                                            inner, max_size=5)),
    max_leaves=25,
)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Any:
    body = fixture(draw(st.sampled_from(["one.json", "list.json"])))
    alerts = body if isinstance(body, list) else [body]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        alert = draw(st.sampled_from(alerts))
        key = draw(st.sampled_from([*GENERIC_SCHEMA["$defs"]["alert"]["properties"], "alerts"]))
        if draw(st.booleans()) and key in alert:
            del alert[key]
        else:
            alert[key] = draw(json_values)
    return body if draw(st.booleans()) else {"alerts": alerts}


def _parse_or_invalid(body: Any) -> None:
    schema_ok = valid(body, GENERIC_SCHEMA)
    try:
        batches = parse_generic(copy.deepcopy(body))
    except InvalidPayload as exc:
        assert isinstance(exc.field, str) and exc.field
        return
    assert schema_ok, "the parser accepted a body its schema refuses"
    assert batches and all(b.alerts for b in batches)
    for batch in batches:
        assert batch.group_key.startswith("generic:")
        keys = {(a.alertname, a.labels.get("service", ""), a.labels.get("namespace", "")) for a in batch.alerts}
        assert len(keys) == 1
        for alert in batch.alerts:
            assert alert.alertname and alert.labels["severity"] and 0 < len(alert.fingerprint) <= 128


@PROPERTY
@given(json_values)
def test_parse_generic_random_json_is_a_result_or_invalid(body: Any) -> None:
    _parse_or_invalid(body)


@PROPERTY
@given(mutated_fixtures())
def test_parse_generic_mutated_fixtures_are_a_result_or_invalid(body: Any) -> None:
    _parse_or_invalid(body)


safe_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
short_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
times = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1),
                     timezones=st.sampled_from([UTC, None])).map(
    lambda d: (d if d.tzinfo else d.replace(tzinfo=UTC) + timedelta(0)).isoformat())
urls = st.from_regex(r"https?://[a-z0-9.-]{1,20}(/[a-zA-Z0-9/._~%-]{0,30})?", fullmatch=True)
string_maps = st.dictionaries(short_names, safe_text, max_size=4)


@st.composite
def schema_valid_alerts(draw: st.DrawFn) -> dict[str, Any]:
    alert: dict[str, Any] = {"title": draw(safe_text.filter(lambda t: t.strip()).map(lambda t: t[:MAX_TITLE_CHARS]))}
    optional = {
        "severity": st.sampled_from(["critical", "warning", "info", "P2", "", None]),
        "service": st.none() | short_names,
        "namespace": st.none() | short_names,
        "status": st.sampled_from(["firing", "resolved", None]),
        "labels": st.none() | string_maps,
        "annotations": st.none() | string_maps,
        "fingerprint": st.none() | short_names,
        "starts_at": st.none() | times,
        "ends_at": st.none() | times,
        "description": st.none() | safe_text,
        "url": st.sampled_from(["", None]) | urls,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            alert[key] = draw(strategy)
    return alert


@PROPERTY
@given(st.one_of(schema_valid_alerts(), st.lists(schema_valid_alerts(), min_size=1, max_size=5),
                 st.lists(schema_valid_alerts(), min_size=1, max_size=5).map(lambda a: {"alerts": a})))
def test_parse_generic_accepts_what_the_schema_accepts(body: Any) -> None:
    assert valid(body, GENERIC_SCHEMA)
    batches = parse_generic(body)
    count = len(body) if isinstance(body, list) else len(body["alerts"]) if "alerts" in body else 1
    assert sum(len(b.alerts) for b in batches) == count
