"""Alert sources: configuration parsing, authentication (token, basic auth, header, HMAC with timestamp) and
what a source adds to its alerts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.ingest_model import AlertBatch, IncomingAlert
from services.sources.credentials import (
    AuthFailure,
    Credentials,
    InvalidSources,
    Source,
    authenticate,
    for_source,
    load_sources,
    parse_sources,
    sign,
)

NOW = 1_790_000_000.0
DEFAULT = Source(name="default", token="the-default-ingest-token")
GRAFANA = Source(name="payments-grafana", token="payments-grafana-token", kinds=frozenset({"grafana"}),
                 labels={"team": "payments", "env": "prod"})
CI = Source(name="ci", hmac_secret="ci-hmac-secret-0123456789", kinds=frozenset({"generic"}))
SOURCES = (DEFAULT, GRAFANA, CI)
BODY = b'{"title": "Nightly build failed"}'


def signed(body: bytes = BODY, *, secret: str = "ci-hmac-secret-0123456789", ts: int = int(NOW), source: str = "ci",
           signature: str | None = None) -> Credentials:
    return Credentials(source=source, timestamp=str(ts), signature=signature or f"sha256={sign(secret, str(ts), body)}")


def test_sources_parse_with_defaults_and_labels() -> None:
    sources = parse_sources({"sources": [
        {"name": "payments-grafana", "kinds": ["grafana"], "token": "payments-grafana-token",
         "labels": {"team": "payments", "env": "prod"}},
        {"name": "ci", "hmac_secret": "ci-hmac-secret-0123456789", "kinds": "generic"},
        {"name": "all", "token": "token-for-everything-1"},
    ]})
    assert [s.name for s in sources] == ["payments-grafana", "ci", "all"]
    assert sources[0].labels == {"team": "payments", "env": "prod"} and sources[0].kinds == {"grafana"}
    assert sources[1].token is None and sources[1].kinds == {"generic"}
    assert sources[2].kinds == {"alertmanager", "grafana", "generic"}
    assert "payments-grafana-token" not in repr(sources[0])  # secrets never show in logs or reprs


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("nope", "expected a list of sources"),
        ([{"token": "x" * 20}], "sources[0].name: required"),
        ([{"name": "default", "token": "x" * 20}], "ALERTPILOT_INGEST_TOKEN's source"),
        ([{"name": "a b", "token": "x" * 20}], "sources[0].name"),
        ([{"name": "a"}], "needs a token or an hmac_secret"),
        ([{"name": "a", "token": "short"}], "sources[0] (a).token: must be 16-512"),
        ([{"name": "a", "token": "x" * 20}, {"name": "a", "token": "y" * 20}], "used twice"),
        ([{"name": "a", "token": "x" * 20}, {"name": "b", "hmac_secret": "x" * 20}], "same as another source's"),
        ([{"name": "a", "token": "x" * 20, "kinds": ["prometheus"]}], "kinds: a list of alertmanager, grafana, generic"),
        ([{"name": "a", "token": "x" * 20, "labels": {"bad-label": "x"}}], "labels.bad-label"),
        ([{"name": "a", "token": "x" * 20, "secret": "x"}], "unknown field(s) secret"),
    ],
)
def test_sources_bad_configuration_names_the_problem(data: object, problem: str) -> None:
    with pytest.raises(InvalidSources) as caught:
        parse_sources(data)
    assert problem in str(caught.value)
    assert "x" * 20 not in str(caught.value)  # never echo a secret


def test_sources_load_from_json_and_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - name: cron\n    kinds: [generic]\n    token: cron-token-0123456789\n")
    sources = load_sources(json.dumps([{"name": "ci", "hmac_secret": "ci-hmac-secret-0123456789"}]), str(path))
    assert [s.name for s in sources] == ["ci", "cron"]
    with pytest.raises(InvalidSources, match="ALERTPILOT_SOURCES: not valid JSON"):
        load_sources("{", None)
    with pytest.raises(InvalidSources, match="ALERTPILOT_SOURCES_FILE: .*cannot read"):
        load_sources(None, str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidSources, match="declared twice: cron"):
        load_sources(json.dumps([{"name": "cron", "token": "another-token-0123456789"}]), str(path))
    assert load_sources(None, None) == []


def test_bearer_token_identifies_the_source_and_its_kinds() -> None:
    assert authenticate(SOURCES, "alertmanager", Credentials(bearer="the-default-ingest-token"), BODY, now=NOW) is DEFAULT
    assert authenticate(SOURCES, "grafana", Credentials(bearer="payments-grafana-token"), BODY, now=NOW) is GRAFANA
    with pytest.raises(AuthFailure) as caught:
        authenticate(SOURCES, "generic", Credentials(bearer="payments-grafana-token"), BODY, now=NOW)
    assert caught.value.status == 403 and "may not post to /webhooks/generic" in caught.value.reason
    for credentials in (Credentials(bearer="wrong"), Credentials()):
        with pytest.raises(AuthFailure) as refused:
            authenticate(SOURCES, "alertmanager", credentials, BODY, now=NOW)
        assert refused.value.status == 401


def test_grafana_basic_auth_and_custom_header() -> None:
    basic = Credentials(basic=("payments-grafana", "payments-grafana-token"))
    assert authenticate(SOURCES, "grafana", basic, BODY, now=NOW) is GRAFANA
    assert authenticate(SOURCES, "grafana", Credentials(token_header="payments-grafana-token"), BODY, now=NOW) is GRAFANA
    for wrong in (("payments-grafana", "the-default-ingest-token"), ("nobody", "payments-grafana-token")):
        with pytest.raises(AuthFailure, match="wrong user or password"):
            authenticate(SOURCES, "grafana", Credentials(basic=wrong), BODY, now=NOW)


def test_hmac_signature_with_timestamp() -> None:
    assert authenticate(SOURCES, "generic", signed(), BODY, now=NOW) is CI
    assert authenticate(SOURCES, "generic", signed(ts=int(NOW) - 299), BODY, now=NOW) is CI
    cases = [
        (signed(secret="not-the-secret-0123456789"), "does not match"),
        (signed(ts=int(NOW) - 301), "more than 5 minutes off"),
        (signed(ts=int(NOW) + 400), "more than 5 minutes off"),
        (signed(b'{"title": "something else"}'), "does not match"),  # the body was changed
        (signed(source=""), "names its source"),
        (signed(source="payments-grafana"), "no source 'payments-grafana' with an hmac_secret"),
        (signed(signature="sha1=abc"), "expected sha256=<64 hex digits>"),
        (Credentials(source="ci", signature="sha256=" + "0" * 64), "X-Alertpilot-Timestamp: required"),
    ]
    for credentials, reason in cases:
        with pytest.raises(AuthFailure) as caught:
            authenticate(SOURCES, "generic", credentials, BODY, now=NOW)
        assert reason in caught.value.reason and caught.value.status == 401


def test_odd_header_values_are_refused_with_a_reason_not_an_exception() -> None:
    """Found by fuzzing (tests/http/test_fuzz_inputs.py): header bytes that are not UTF-8 reach here as lone
    surrogates (aiohttp decodes with surrogateescape), and "²" is a digit to str.isdigit but not to int()."""
    cases = [
        (Credentials(token_header="\udcff"), "wrong token"),
        (Credentials(bearer="\udc80abc"), "wrong token"),
        (Credentials(basic=("default", "\udcff")), "wrong user or password"),
        (Credentials(source="ci", timestamp="²", signature="sha256=" + "0" * 64), "X-Alertpilot-Timestamp: required"),
        (Credentials(source="ci", timestamp="١٧٩٠٠٠٠٠٠٠", signature="sha256=" + "0" * 64),
         "X-Alertpilot-Timestamp: required"),
    ]
    for credentials, reason in cases:
        with pytest.raises(AuthFailure) as caught:
            authenticate(SOURCES, "generic", credentials, BODY, now=NOW)
        assert reason in caught.value.reason and caught.value.status == 401


def test_the_timestamp_is_signed_too() -> None:
    """Moving an old request's timestamp forward breaks its signature: a replay cannot be refreshed."""
    old = signed(ts=int(NOW) - 3600)
    moved = Credentials(source="ci", timestamp=str(int(NOW)), signature=old.signature)
    with pytest.raises(AuthFailure, match="does not match"):
        authenticate(SOURCES, "generic", moved, BODY, now=NOW)


def _batch() -> AlertBatch:
    alert = IncomingAlert(fingerprint="fp1", status="firing", labels={"alertname": "HighLatency", "env": "staging"},
                          annotations={}, starts_at=None, ends_at=None)
    return AlertBatch(source="grafana", receiver="webhook", group_key="g", status="firing", alerts=[alert],
                      common_labels={"alertname": "HighLatency"})


def test_a_source_adds_its_labels_and_its_name_to_the_receiver() -> None:
    batch = for_source(_batch(), GRAFANA)
    assert batch.receiver == "payments-grafana/webhook"
    assert batch.alerts[0].labels == {"alertname": "HighLatency", "env": "staging", "team": "payments"}  # its own win
    assert batch.common_labels == {"alertname": "HighLatency", "team": "payments"}  # env differs per alert
    assert for_source(_batch(), DEFAULT) == _batch()  # the default source changes nothing (existing data keeps its keys)
