"""End to end: Grafana and generic JSON alerts from their own sources (token, basic auth, HMAC signature)
become cards in the chat, with the same guarantees as Alertmanager's; bad credentials are refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.sources.credentials import sign
from tests.e2e.test_telegram_flow import cards
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    APPROVER2,
    CHAT_ID,
    ROOT,
    TOKEN,
    AppUnderTest,
    app_settings,
    eventually,
    fixture,
    start_app,
)

FIXTURES = ROOT / "tests" / "fixtures"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
GRAFANA_TOKEN = "payments-grafana-token-0123"
CI_SECRET = "ci-hmac-secret-0123456789"
SOURCES = [
    {"name": "payments-grafana", "kinds": ["grafana"], "token": GRAFANA_TOKEN, "labels": {"team": "payments"}},
    {"name": "ci", "kinds": ["generic"], "hmac_secret": CI_SECRET},
]


class Clock:
    def __call__(self) -> datetime:
        return NOW


def load(kind: str, name: str) -> Any:
    return json.loads((FIXTURES / kind / name).read_text())


@pytest.fixture
async def app(tmp_path: Path, bot_api: FakeBotAPI) -> Any:
    settings = app_settings(tmp_path, bot_api=bot_api.base_url, sources=json.dumps(SOURCES))
    running = await start_app(settings, clock=Clock())
    await bot_api.wait_for("getUpdates")
    try:
        yield running
    finally:
        await running.stop()


async def post(app: AppUnderTest, path: str, body: bytes, **headers: str) -> httpx.Response:
    return await app.http.post(path, content=body, headers={"Content-Type": "application/json", **headers})


def signed_headers(body: bytes, *, secret: str = CI_SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(NOW.timestamp()) if ts is None else ts)
    return {"X-Alertpilot-Source": "ci", "X-Alertpilot-Timestamp": stamp,
            "X-Alertpilot-Signature": f"sha256={sign(secret, stamp, body)}"}


async def test_grafana_alert_with_its_source_token_becomes_a_card_with_dashboard_links(
    app: AppUnderTest, bot_api: FakeBotAPI
) -> None:
    body = json.dumps(load("grafana", "firing.json")).encode()
    response = await post(app, "/webhooks/grafana", body, Authorization=f"Bearer {GRAFANA_TOKEN}")
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "payments-grafana" and response.json()["incidents"] == ["INC-1"]
    card = (await eventually(lambda: cards(bot_api)))[0]
    dashboard = "https://grafana.example.com/d/node-disk?from=1795493200217&amp;orgId=1&amp;to=1795496830000"
    assert f'🔗 <a href="{dashboard}">Dashboard</a> · <a href="' in card["text"] and '">Panel</a>' in card["text"]
    alerts = (await app.get("/api/alerts")).json()["items"]
    assert alerts[0]["labels"]["team"] == "payments"  # the source's label
    # Grafana's basic auth option: <source name>:<token>
    basic = base64.b64encode(f"payments-grafana:{GRAFANA_TOKEN}".encode()).decode()
    again = await post(app, "/webhooks/grafana", body, Authorization=f"Basic {basic}")
    assert again.status_code == 200 and again.json()["repeats"] == 1


async def test_generic_alert_signed_by_its_source(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    body = json.dumps({"title": "Nightly backup failed", "severity": "critical", "service": "backup",
                       "namespace": "ops", "description": "exit code 3"}).encode()
    response = await post(app, "/webhooks/generic", body, **signed_headers(body))
    assert response.status_code == 200, response.text
    assert response.json()["incidents"] == ["INC-1"]
    card = (await eventually(lambda: cards(bot_api)))[0]
    assert "Nightly backup failed" in card["text"] and "backup" in card["text"]
    replay = await post(app, "/webhooks/generic", body, **signed_headers(body))
    assert replay.status_code == 401 and "replay" in replay.json()["error"]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (lambda b: signed_headers(b, secret="not-the-secret-012345"), "does not match"),
        (lambda b: signed_headers(b, ts=int(NOW.timestamp()) - 600), "minutes off"),
        (lambda b: {**signed_headers(b), "X-Alertpilot-Source": "nobody"}, "no source 'nobody'"),
        (lambda b: {"Authorization": f"Bearer {GRAFANA_TOKEN}"}, "may not post to /webhooks/generic"),
        (lambda b: {"Authorization": "Bearer wrong-token"}, "wrong token"),
        (lambda b: {}, "no credentials"),
    ],
)
async def test_bad_credentials_are_refused_and_nothing_is_stored(
    app: AppUnderTest, headers: Any, reason: str
) -> None:
    body = json.dumps({"title": "Disk full on backup host"}).encode()
    response = await post(app, "/webhooks/generic", body, **headers(body))
    assert response.status_code in (401, 403) and reason in response.json()["error"]
    assert CI_SECRET not in response.text and GRAFANA_TOKEN not in response.text
    assert (await app.get("/api/stats")).json()["alerts"] == 0


async def test_default_token_still_works_and_bad_bodies_get_400(app: AppUnderTest) -> None:
    response = await app.post_alerts(fixture("01-firing-one-alert.json"))
    assert response.status_code == 200 and response.json()["source"] == "default"
    bad = await post(app, "/webhooks/generic", b'{"severity": "critical"}', Authorization=f"Bearer {TOKEN}")
    assert bad.status_code == 400 and "title" in bad.json()["error"]
    garbage = await post(app, "/webhooks/grafana", b"[1, 2", Authorization=f"Bearer {TOKEN}")
    assert garbage.status_code == 400 and "malformed JSON" in garbage.json()["error"]
    schema = await app.http.get("/webhooks/generic/schema")
    assert schema.status_code == 200 and schema.headers["Content-Type"].startswith("application/schema+json")
    assert schema.json()["$defs"]["alert"]["required"] == ["title"]


PAYMENTS_CHAT, CI_CHAT = -1009990001, -1009990002


async def test_incidents_go_to_their_source_or_route_chats(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    """The ci source has its own chat; team=payments alerts go by ALERTPILOT_ROUTES; the rest to the default chat.
    Follow-ups (approval, resolution) thread under the card in the incident's chat, and its buttons work there,
    for an approver limited to that route; elsewhere that approver is refused."""
    sources = [{**SOURCES[1], "chats": [f"tg:{CI_CHAT}"]}, SOURCES[0]]
    settings = app_settings(tmp_path, bot_api=bot_api.base_url, sources=json.dumps(sources),
                            routes=f"payments: team=payments -> tg:{PAYMENTS_CHAT}; env=nowhere -> tg:-100123",
                            roles=f"tg:{APPROVER}=approver@route:payments,tg:{APPROVER2}=approver")
    app = await start_app(settings, clock=Clock())
    try:
        await bot_api.wait_for("getUpdates")
        body = json.dumps({"title": "Deploy failed", "service": "api"}).encode()
        assert (await post(app, "/webhooks/generic", body, **signed_headers(body))).status_code == 200
        grafana = json.dumps(load("grafana", "firing.json")).encode()
        assert (await post(app, "/webhooks/grafana", grafana, Authorization=f"Bearer {GRAFANA_TOKEN}")).status_code == 200
        assert (await app.post_alerts(fixture("01-firing-one-alert.json"))).status_code == 200

        def cards_in(chat: int) -> list[dict]:
            return [m for m in bot_api.sent_messages(chat) if m.get("reply_markup") and "INC-" in m["text"]]

        await eventually(lambda: cards_in(CI_CHAT) and cards_in(PAYMENTS_CHAT) and cards_in(CHAT_ID))
        assert "Deploy failed" in cards_in(CI_CHAT)[0]["text"]
        assert "High disk usage" in cards_in(PAYMENTS_CHAT)[0]["text"]  # labelled team=payments by its source
        assert "DiskFull" in cards_in(CHAT_ID)[0]["text"]
        assert all(len(cards_in(chat)) == 1 for chat in (CI_CHAT, PAYMENTS_CHAT, CHAT_ID))  # each card once, one chat
        assert bot_api.sent_messages(-100123) == []

        # a button pressed in the routed chat applies, and the update threads there
        card = cards_in(PAYMENTS_CHAT)[0]
        approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        bot_api.inject_callback(PAYMENTS_CHAT, APPROVER, card["message_id"], approve, username="alice")
        await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == PAYMENTS_CHAT
                               and "Approved by @alice" in r.params["text"])
        assert not any("Approved by" in m["text"] for m in bot_api.sent_messages(CHAT_ID))
        other = cards_in(CHAT_ID)[0]
        approve = other["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        bot_api.inject_callback(CHAT_ID, APPROVER, other["message_id"], approve, username="alice")
        refused = await bot_api.wait_for("answerCallbackQuery", predicate=lambda r: "not allowed" in r.params["text"])
        assert refused[0].params["show_alert"] == "true"
    finally:
        await app.stop()
