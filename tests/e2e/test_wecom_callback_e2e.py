"""End to end: the WeCom AI-bot callback of the running app, driven with the recorded fixtures (made with
Tencent's reference WXBizMsgCrypt) and with messages encrypted here the same way. The app's clock is set
to the fixtures' time, so their timestamps are fresh."""

from __future__ import annotations

import copy
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.chat.wecom_crypto import WeComCrypto
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.openai import FakeOpenAI
from tests.harness import (
    APPROVER,
    CHAT_ID,
    FIXTURES,
    ROLES,
    AppUnderTest,
    app_settings,
    eventually,
    fixture,
    start_app,
)

CALLBACKS = json.loads((FIXTURES / "wecom" / "aibot_callbacks.json").read_text())
NOW = datetime.fromtimestamp(int(CALLBACKS["mention_text"]["query"]["timestamp"]), UTC)
WECOM_ROLES = f"{ROLES},wecom:lisi=approver,wecom:zhangsan=approver"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def crypto() -> WeComCrypto:
    return WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], CALLBACKS["receive_id"])


async def start(tmp_path: Path, bot_api: FakeBotAPI | None = None, **overrides: Any) -> AppUnderTest:
    settings = app_settings(
        tmp_path, bot_api=None if bot_api is None else bot_api.base_url, roles=WECOM_ROLES,
        wecom_bot_token=CALLBACKS["token"], wecom_bot_aes_key=CALLBACKS["encoding_aes_key"], **overrides,
    )
    return await start_app(settings, clock=Clock(NOW))


async def post_callback(app: AppUnderTest, query: dict[str, str], body: Any) -> httpx.Response:
    return await app.http.post("/wecom/callback", params=query, json=body)


def sealed(crypto: WeComCrypto, message: dict[str, Any], *, timestamp: int | None = None) -> tuple[dict[str, str], dict]:
    """A callback as WeCom would send it: the message encrypted and signed."""
    ts = str(timestamp if timestamp is not None else int(NOW.timestamp()))
    nonce = secrets.token_hex(4)
    encrypt = crypto.encrypt(json.dumps(message))
    return {"msg_signature": crypto.signature(ts, nonce, encrypt), "timestamp": ts, "nonce": nonce}, {"encrypt": encrypt}


def opened(crypto: WeComCrypto, response: httpx.Response) -> dict[str, Any]:
    """The app's encrypted passive reply, verified and decrypted."""
    assert response.status_code == 200, response.text
    envelope = response.json()
    crypto.verify(envelope["msgsignature"], str(envelope["timestamp"]), envelope["nonce"], envelope["encrypt"])
    return json.loads(crypto.decrypt(envelope["encrypt"]))


def mention(text: str, *, userid: str = "zhangsan", msgid: str | None = None) -> dict[str, Any]:
    message = copy.deepcopy(CALLBACKS["mention_text"]["plaintext"])
    message["text"]["content"] = text
    message["from"]["userid"] = userid
    message["msgid"] = msgid or secrets.token_hex(8)
    return message


def click(task_id: str, key: str, *, userid: str = "lisi") -> dict[str, Any]:
    message = copy.deepcopy(CALLBACKS["card_click"]["plaintext"])
    message["event"]["template_card_event"].update(task_id=task_id, event_key=key)
    message["from"]["userid"] = userid
    message["msgid"] = secrets.token_hex(8)
    return message


async def open_incidents(app: AppUnderTest, count: int) -> None:
    """``count`` incidents (INC-1 … INC-count), each its own Alertmanager group."""
    for number in range(count):
        payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
        payload["groupKey"] = f"{{}}:{{alertname=\"DiskFull{number}\"}}"
        for alert in payload["alerts"]:
            alert["fingerprint"] = f"fp{number:014d}"
            alert["startsAt"] = NOW.isoformat()
        assert (await app.post_alerts(payload)).status_code == 200
    await eventually(lambda: _decided(app, f"INC-{count}"))


async def _decided(app: AppUnderTest, ref: str) -> bool:
    response = await app.get(f"/api/incidents/{ref}")
    return response.status_code == 200 and response.json()["decision"] is not None


async def test_url_verification_answers_the_decrypted_echostr(tmp_path: Path) -> None:
    app = await start(tmp_path)
    try:
        query = CALLBACKS["url_verification"]["query"]
        response = await app.http.get("/wecom/callback", params=query)
        assert response.status_code == 200 and response.text == CALLBACKS["url_verification"]["expected_response_body"]
        tampered = {**query, "msg_signature": "0" * 40}
        assert (await app.http.get("/wecom/callback", params=tampered)).status_code == 403
        assert (await app.http.get("/wecom/callback", params={"timestamp": "1"})).status_code == 400
    finally:
        await app.stop()


async def test_recorded_mention_is_answered_with_an_encrypted_reply(tmp_path: Path, crypto: WeComCrypto) -> None:
    app = await start(tmp_path)
    try:
        recorded = CALLBACKS["mention_text"]
        reply = opened(crypto, await post_callback(app, recorded["query"], recorded["body"]))
        # "@alertpilot approve INC-12": there is no INC-12 in this fresh database
        assert reply["msgtype"] == "markdown" and "INC-12" in reply["markdown"]["content"]
        # WeCom repeats a callback it thinks was lost: the same msgid is processed once
        again = await post_callback(app, recorded["query"], recorded["body"])
        assert again.status_code == 200 and again.text == ""
    finally:
        await app.stop()


async def test_callbacks_that_do_not_authenticate_are_refused(tmp_path: Path, crypto: WeComCrypto) -> None:
    app = await start(tmp_path)
    try:
        query, body = sealed(crypto, mention("@alertpilot help"))
        assert (await post_callback(app, {**query, "msg_signature": "f" * 40}, body)).status_code == 403
        other = WeComCrypto(CALLBACKS["token"], "A" * 43)  # another bot's key
        query2, body2 = sealed(other, mention("@alertpilot help"))
        assert (await post_callback(app, query2, body2)).status_code == 403
        stale_query, stale_body = sealed(crypto, mention("@alertpilot help"), timestamp=int(NOW.timestamp()) - 301)
        assert (await post_callback(app, stale_query, stale_body)).status_code == 403
        wrong_id = WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], "ww-some-corp")
        query3, body3 = sealed(wrong_id, mention("@alertpilot help"))
        assert (await post_callback(app, query3, body3)).status_code == 403
        assert (await post_callback(app, query, {"encrypt": 12})).status_code == 400
        assert (await app.http.post("/wecom/callback", params=query, content=b"not json")).status_code == 400
        fine = opened(crypto, await post_callback(app, query, body))
        assert "approve" in fine["markdown"]["content"]  # the help text
    finally:
        await app.stop()


async def test_malformed_callbacks_are_400_with_a_reason(tmp_path: Path, crypto: WeComCrypto) -> None:
    """Found by fuzzing (tests/http/test_fuzz_inputs.py), each was a 500: JSON nested too deeply (the body, or
    the decrypted message) and a message whose strings carry a lone surrogate (a JSON "\\ud800" escape),
    which the database cannot store. A NUL is refused alike (PostgreSQL cannot store it either)."""
    app = await start(tmp_path)
    try:
        query, _ = sealed(crypto, mention("@alertpilot help"))
        response = await app.http.post("/wecom/callback", params=query, content=b"[" * 100_000)
        assert response.status_code == 400 and "nested too deeply" in response.json()["error"]
        for inner, reason in [
            ("[" * 5000 + "]" * 5000, "nested too deeply"),
            (json.dumps(mention("@alertpilot help", msgid="\ud800")), "lone surrogate"),
            (json.dumps(mention("@alertpilot help", userid="zhang\udcffsan")), "lone surrogate"),
            (json.dumps(mention("@alertpilot help\x00")), "NUL"),
        ]:
            ts, nonce, encrypt = str(int(NOW.timestamp())), secrets.token_hex(4), crypto.encrypt(inner)
            signed = {"msg_signature": crypto.signature(ts, nonce, encrypt), "timestamp": ts, "nonce": nonce}
            response = await post_callback(app, signed, {"encrypt": encrypt})
            assert response.status_code == 400 and reason in response.json()["error"], (inner[:80], response.text)
        assert (await app.http.get("/healthz")).status_code == 200
    finally:
        await app.stop()


async def test_mention_shows_the_incident_as_a_card_and_a_click_approves_it(
    tmp_path: Path, crypto: WeComCrypto
) -> None:
    app = await start(tmp_path)
    try:
        await open_incidents(app, 1)
        reply = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot INC-1"))))
        card = reply["template_card"]
        assert reply["msgtype"] == "template_card" and card["card_type"] == "button_interaction"
        assert "INC-1" in card["main_title"]["title"] and card["task_id"].startswith("INC-1-")
        assert [b["key"] for b in card["button_list"]] == ["approve", "reject", "details", "silence"]

        answer = opened(crypto, await post_callback(app, *sealed(crypto, click(card["task_id"], "approve"))))
        assert answer["response_type"] == "update_template_card"
        updated = answer["template_card"]
        assert "approved" in updated["sub_title_text"].lower()
        assert "approve" not in [b["key"] for b in updated["button_list"]]
        body = (await app.get("/api/incidents/INC-1")).json()
        assert body["decision"]["decided_by"] == "wecom:lisi"
        # a late or repeated click changes nothing and says so
        late = opened(crypto, await post_callback(app, *sealed(crypto, click(card["task_id"], "reject"))))
        assert "already" in late["template_card"]["sub_title_text"]
    finally:
        await app.stop()


async def test_recorded_mention_fixture_approves_inc_12_and_returns_its_card(
    tmp_path: Path, crypto: WeComCrypto
) -> None:
    app = await start(tmp_path)
    try:
        await open_incidents(app, 12)
        recorded = CALLBACKS["mention_text"]  # "@alertpilot approve INC-12" by zhangsan
        reply = opened(crypto, await post_callback(app, recorded["query"], recorded["body"]))
        card = reply["template_card"]
        assert reply["msgtype"] == "template_card" and "INC-12" in card["main_title"]["title"]
        assert "approved" in card["sub_title_text"] and card["task_id"].startswith("INC-12-")
        assert (await app.get("/api/incidents/INC-12")).json()["decision"]["decided_by"] == "wecom:zhangsan"
    finally:
        await app.stop()


async def test_recorded_click_fixture_approves_inc_12(tmp_path: Path, crypto: WeComCrypto) -> None:
    app = await start(tmp_path)
    try:
        await open_incidents(app, 12)
        recorded = CALLBACKS["card_click"]
        answer = opened(crypto, await post_callback(app, {**recorded["query"], "timestamp": recorded["query"]["timestamp"]},
                                                    recorded["body"]))
        assert answer["response_type"] == "update_template_card"
        body = (await app.get("/api/incidents/INC-12")).json()
        assert body["decision"]["decided_by"] == "wecom:lisi"
    finally:
        await app.stop()


async def test_unknown_users_and_commands_get_clear_answers(tmp_path: Path, crypto: WeComCrypto) -> None:
    app = await start(tmp_path)
    try:
        await open_incidents(app, 1)
        refused = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot approve INC-1",
                                                                                 userid="mallory"))))
        assert "not allowed" in refused["markdown"]["content"]  # a stranger sees no card either
        unknown = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot dance"))))
        assert "dance" in unknown["markdown"]["content"]
        bad = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot status INC-x"))))
        assert "INC-x" in bad["markdown"]["content"]
        later = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot kb disk full"))))
        assert "Telegram group for now" in later["markdown"]["content"]
        listing = opened(crypto, await post_callback(app, *sealed(crypto, mention("/incidents"))))
        assert "INC-1" in listing["markdown"]["content"]
    finally:
        await app.stop()


async def test_one_incident_two_channels_two_approvers(tmp_path: Path, bot_api: FakeBotAPI, crypto: WeComCrypto) -> None:
    """The two-approver tier: a Telegram approver and a WeCom approver are two different people."""
    app = await start(tmp_path, bot_api)
    try:
        await bot_api.wait_for("getUpdates")
        await open_incidents(app, 1)
        bot_api.inject_message(CHAT_ID, 222, "/run kubectl -n prod delete deployment api INC-1", username="olga")
        await eventually(lambda: _tier(app, "two_approvers"))
        bot_api.inject_message(CHAT_ID, APPROVER, "/approve INC-1", username="alice")
        await eventually(lambda: _signatures(app, 1))
        reply = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot approve INC-1",
                                                                               userid="lisi"))))
        assert "approved" in reply["template_card"]["sub_title_text"]
        body = (await app.get("/api/incidents/INC-1")).json()
        assert body["decision"]["decided_by"] == "wecom:lisi" and body["decision"]["state"] != "pending"
        # Telegram's card learns the outcome too
        await eventually(lambda: any("approved by lisi" in m.get("text", "") for m in bot_api.sent_messages(CHAT_ID)))
    finally:
        await app.stop()


async def _tier(app: AppUnderTest, tier: str) -> bool:
    decision = (await app.get("/api/incidents/INC-1")).json()["decision"]
    return decision is not None and decision["tier"] == tier


async def _signatures(app: AppUnderTest, count: int) -> bool:
    timeline = (await app.get("/api/incidents/INC-1")).json()["timeline"]
    return sum(1 for e in timeline if e["kind"] == "approval_signed") >= count


async def test_summary_without_a_model_comes_whole_in_the_first_stream_reply(
    tmp_path: Path, crypto: WeComCrypto
) -> None:
    app = await start(tmp_path)
    try:
        await open_incidents(app, 1)
        reply = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot summary INC-1"))))
        assert reply["msgtype"] == "stream" and reply["stream"]["finish"] is True
        assert "Summary of INC-1" in reply["stream"]["content"] and "built from the data" in reply["stream"]["content"]
        missing = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot summary INC-99"))))
        assert "INC-99" in missing["stream"]["content"] and missing["stream"]["finish"] is True
    finally:
        await app.stop()


async def test_ask_streams_a_slow_model_answer_until_finished(
    tmp_path: Path, crypto: WeComCrypto, model: FakeOpenAI
) -> None:
    model.reply_slow(1.5, "Nothing is firing; the last incident was a disk alert.")
    app = await start(tmp_path, ai_base_url=model.base_url, ai_model="fake-model", decision_sla_seconds=10)
    try:
        first = opened(crypto, await post_callback(app, *sealed(crypto, mention("@alertpilot ask what is going on?"))))
        stream_id = first["stream"]["id"]
        assert first["msgtype"] == "stream" and first["stream"]["finish"] is False
        assert "Working on it" in first["stream"]["content"]  # the first chunk comes at once

        async def refreshed() -> dict[str, Any] | None:
            refresh = {**CALLBACKS["mention_text"]["plaintext"], "msgid": secrets.token_hex(8), "msgtype": "stream",
                       "stream": {"id": stream_id}}
            refresh.pop("text", None)
            reply = opened(crypto, await post_callback(app, *sealed(crypto, refresh)))
            return reply if reply["stream"]["finish"] else None

        final = await eventually(refreshed, interval=0.3)
        assert final["stream"]["id"] == stream_id and "disk alert" in final["stream"]["content"]
    finally:
        await app.stop()
