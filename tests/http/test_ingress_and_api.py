"""The HTTP edge: auth, validation with reasons, size limit, health, and the paginated read API."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from bot.cli import send_test_alert
from tests.harness import AppUnderTest, app_settings, eventually, fixture, start_app


async def test_ingress_requires_the_bearer_token(plain_app: AppUnderTest) -> None:
    payload = fixture("01-firing-one-alert.json")
    missing = await plain_app.http.post("/webhooks/alertmanager", json=payload)
    wrong = await plain_app.post_alerts(payload, token="nope")
    basic = await plain_app.http.post("/webhooks/alertmanager", json=payload, headers={"Authorization": "Basic eDp5"})
    assert [r.status_code for r in (missing, wrong, basic)] == [401, 401, 401]
    assert "bearer" in missing.json()["error"].lower()
    assert (await plain_app.get("/api/stats")).json()["alerts"] == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("version"), "version"),
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.pop("groupKey"), "groupKey"),
        (lambda p: p.update(alerts="nope"), "alerts"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p["alerts"][0]["labels"].pop("alertname"), "alerts[0].labels.alertname"),
        (lambda p: p["alerts"][0]["labels"].update(severity=3), "alerts[0].labels.severity"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(status="pending"), "alerts[0].status"),
    ],
)
async def test_ingress_rejects_bad_payload_naming_the_field(plain_app: AppUnderTest, mutate, field: str) -> None:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    mutate(payload)
    response = await plain_app.post_alerts(payload)
    assert response.status_code == 400
    assert response.json()["field"] == field and field in response.json()["error"]


async def test_ingress_malformed_json_empty_body_and_wrong_shapes_are_400(plain_app: AppUnderTest) -> None:
    headers = {"Authorization": "Bearer test-ingest-token", "Content-Type": "application/json"}
    for body in (b"{not json", b"", b"[1, 2]", b"\xff\xfe", b'"text"', b"null", b"[" * 200_000, b'{"a":' * 100_000):
        response = await plain_app.http.post("/webhooks/alertmanager", content=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]
    assert (await plain_app.get("/healthz")).status_code == 200  # the server is still up


async def test_ingress_odd_credential_headers_are_401_with_a_reason(tmp_path: Path) -> None:
    """Found by fuzzing (tests/http/test_fuzz_inputs.py), each was a 500: basic auth that is not ASCII, a token
    header that is not UTF-8, and a signed request's timestamp "²" (a digit to str.isdigit, not to int)."""
    sources = [{"name": "ci", "kinds": ["generic"], "hmac_secret": "ci-hmac-secret-0123456789"}]
    app = await start_app(app_settings(tmp_path, sources=json.dumps(sources)))
    try:
        body = b'{"title": "Nightly build failed"}'
        for headers in (
            {"Authorization": "Basic é".encode()},
            {"X-Alertpilot-Token": b"\xff"},
            {"X-Alertpilot-Source": b"ci", "X-Alertpilot-Signature": b"sha256=" + b"0" * 64,
             "X-Alertpilot-Timestamp": "²".encode()},
        ):
            response = await app.http.post("/webhooks/generic", content=body, headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"]
        assert (await app.http.get("/healthz")).status_code == 200
    finally:
        await app.stop()


async def test_ingress_body_over_one_mebibyte_is_413(plain_app: AppUnderTest) -> None:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    payload["alerts"][0]["annotations"]["description"] = "x" * (1024 * 1024)
    response = await plain_app.post_alerts(payload)
    assert response.status_code == 413
    assert "error" in response.json()


async def test_ingress_acknowledged_alert_is_stored_and_readable(plain_app: AppUnderTest) -> None:
    response = await plain_app.post_alerts(fixture("02-firing-two-alerts.json"))
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "source": "default", "accepted": 2, "new": 2, "repeats": 0, "resolved": 0, "incidents": ["INC-1"],
    }
    alerts = (await plain_app.get("/api/alerts", fingerprint="228efb633186ea1c")).json()
    assert alerts["total"] == 1 and alerts["items"][0]["labels"]["instance"] == "db-2"


async def test_healthz_reports_process_and_database(plain_app: AppUnderTest) -> None:
    response = await plain_app.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "telegram": "not configured"}


async def test_read_api_paginates_and_filters(plain_app: AppUnderTest) -> None:
    for n in range(5):
        payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
        payload["groupKey"] = f"{{}}:{{alertname=\"DiskFull\", n=\"{n}\"}}"
        payload["alerts"][0]["fingerprint"] = f"fp{n}"
        assert (await plain_app.post_alerts(payload)).status_code == 200
    page = (await plain_app.get("/api/incidents", limit=2, offset=1)).json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 1
    assert [i["ref"] for i in page["items"]] == ["INC-4", "INC-3"]  # newest first
    assert (await plain_app.get("/api/incidents", status="resolved")).json()["total"] == 0
    assert (await plain_app.get("/api/incidents", status="bogus")).status_code == 400
    assert (await plain_app.get("/api/incidents", limit="-1")).status_code == 400
    assert (await plain_app.get("/api/alerts", status="firing", limit=500)).json()["total"] == 5

    await eventually(lambda: _analysed(plain_app))
    one = (await plain_app.get("/api/incidents/INC-2")).json()
    assert one["ref"] == "INC-2" and len(one["alerts"]) == 1
    assert one["decision"]["source"] == "rules" and one["decision"]["state"] == "pending"
    assert [e["kind"] for e in one["timeline"]][:2] == ["opened", "proposed"]
    assert (await plain_app.get("/api/incidents/INC-99")).status_code == 404
    assert (await plain_app.get("/api/incidents/abc")).status_code == 400
    stats = (await plain_app.get("/api/stats")).json()
    assert stats["alerts"] == 5 and stats["incidents"] == {"total": 5, "firing": 5}


async def _analysed(app: AppUnderTest) -> bool:
    body = (await app.get("/api/incidents/INC-2")).json()
    return body["decision"] is not None


async def test_read_api_requires_token(plain_app: AppUnderTest) -> None:
    for path in ("/api/incidents", "/api/incidents/1", "/api/alerts", "/api/stats"):
        assert (await plain_app.http.get(path)).status_code == 401


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["alerts"][0].update(startsAt="9999-12-31T23:59:59-01:00"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(startsAt="1969-01-01T00:00:00Z"), "alerts[0].startsAt"),
        (lambda p: p.update(groupKey="a\ud800b"), "groupKey"),
        (lambda p: p.update(receiver="nul\x00"), "receiver"),
        (lambda p: p["alerts"][0].update(fingerprint="\udfff"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0]["labels"].update(instance="x\ud800"), "alerts[0].labels.instance"),
        (lambda p: p["alerts"][0]["annotations"].update(summary="\x00"), "alerts[0].annotations.summary"),
    ],
)
async def test_ingress_hostile_text_and_times_are_400(plain_app: AppUnderTest, mutate, field: str) -> None:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    mutate(payload)
    body = json.dumps(payload).encode()  # json escapes lone surrogates as \\udXXX, as a hostile client would
    response = await plain_app.http.post(
        "/webhooks/alertmanager", content=body, headers={"Authorization": "Bearer test-ingest-token"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


async def test_read_api_rejects_absurd_offsets_and_non_ascii_tokens(plain_app: AppUnderTest) -> None:
    assert (await plain_app.get("/api/incidents", offset="99999999999999999999")).status_code == 400
    assert (await plain_app.get("/api/alerts", offset="99999999999999999999")).status_code == 400
    response = await plain_app.http.get("/api/stats", headers={"Authorization": b"Bearer \xff\xfe"})
    assert response.status_code == 401


async def test_send_test_alert_fires_and_resolves_with_the_generated_token(tmp_path: Path, capsys) -> None:
    settings = app_settings(tmp_path, ingest_token=None)  # the token is generated at first start and stored
    running = await start_app(settings)
    try:
        assert await send_test_alert(settings, resolve=None, url=running.base_url) == 0
        test_id = capsys.readouterr().out.split("--resolve ")[1].split()[0]
        assert await send_test_alert(settings, resolve=test_id, url=running.base_url) == 0
        body = (await running.http.get("/api/incidents", headers={"Authorization": f"Bearer {running.deps.ingest_token}"})).json()
        assert body["total"] == 1 and body["items"][0]["status"] == "resolved"
        assert body["items"][0]["alertname"] == "KubePodCrashLooping"
    finally:
        await running.stop()


async def test_send_test_alert_says_what_is_wrong_when_nothing_runs(tmp_path: Path, capsys) -> None:
    settings = app_settings(tmp_path, ingest_token=None)
    assert await send_test_alert(settings, resolve=None, url="http://127.0.0.1:9") == 2  # no token stored yet
    assert "start alertpilot once" in capsys.readouterr().out
