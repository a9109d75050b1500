"""End to end: the real app, a fake Bot API over loopback, real Alertmanager payloads."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import UTC, datetime

from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    APPROVER2,
    CHAT_ID,
    OPERATOR,
    STRANGER,
    VIEWER,
    AppUnderTest,
    app_settings,
    eventually,
    fixture,
    start_app,
)


def cards(bot_api: FakeBotAPI) -> list[dict]:
    return [m for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup") and "INC-" in m["text"]]


async def test_alert_becomes_one_card_with_proposal_and_buttons(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    response = await app.post_alerts(fixture("01-firing-one-alert.json"))
    assert response.status_code == 200, response.text
    assert response.json()["incidents"] == ["INC-1"]

    sends = await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == CHAT_ID)
    text = sends[0].params["text"]
    assert "INC-1" in text and "DiskFull" in text
    assert "kubectl" in text and "rules" in text
    buttons = [b["text"] for row in sends[0].params["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["✅ Approve", "❌ Reject", "🔍 Details", "🔄 Re-analyse", "📜 History", "🔕 Silence 1h"]
    [menu] = await bot_api.wait_for("setMyCommands")
    assert [c["command"] for c in menu.params["commands"]] == [
        "incidents", "status", "approve", "reject", "run", "audit", "summary", "ask", "kb", "note", "playbooks", "report",
        "postmortem", "silence", "silences", "unsilence", "start", "help", "whoami", "chatid", "lang",
    ]


async def test_command_for_another_bot_is_ignored(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    bot_api.inject_message(CHAT_ID, VIEWER, "/deploy@some_other_bot now")
    bot_api.inject_message(CHAT_ID, VIEWER, "/nonsense@alertpilot_bot")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "nonsense" in r.params["text"])
    assert not any("deploy" in r.params.get("text", "") for r in bot_api.calls("sendMessage"))


async def test_approve_button_edits_card_and_threads_reply(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    await eventually(lambda: cards(bot_api))
    card = cards(bot_api)[0]
    approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], approve, username="alice")

    answers = await bot_api.wait_for("answerCallbackQuery")
    assert "approved" in answers[0].params["text"].lower()
    # approved, running or done (the dry run is quick; card edits coalesce to the newest state)
    await bot_api.wait_for("editMessageText", predicate=lambda r: "pproved by @alice" in r.params["text"])
    reply = await bot_api.wait_for(
        "sendMessage", predicate=lambda r: (r.params.get("reply_parameters") or {}).get("message_id") == card["message_id"]
    )
    assert "Approved by @alice" in reply[0].params["text"]
    edited = bot_api.messages[CHAT_ID][card["message_id"]]
    labels = [b["text"] for row in edited["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["🔍 Details", "📜 History", "🔕 Silence 1h"]  # still firing: it may still be silenced
    # the default executor is the dry run: the approved command is recorded and threaded, nothing runs
    await eventually(lambda: "DRY RUN done" in bot_api.messages[CHAT_ID][card["message_id"]]["text"])
    await eventually(lambda: any("DRY RUN" in m["text"] and "Would run" in m["text"]
                                 for m in replies_to(bot_api, card["message_id"])))
    await eventually(lambda: any("DRY RUN" in m["text"] and "complete" in m["text"]
                                 for m in replies_to(bot_api, card["message_id"])))


def replies_to(bot_api: FakeBotAPI, message_id: int) -> list[dict]:
    return [m for m in bot_api.sent_messages(CHAT_ID) if (m.get("reply_parameters") or {}).get("message_id") == message_id]


def button(card: dict, label_start: str) -> str:
    for row in card["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"].startswith(label_start):
                return b["callback_data"]
    raise AssertionError(f"no button {label_start!r} on the card")


async def first_card(app: AppUnderTest, bot_api: FakeBotAPI) -> dict:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    return (await eventually(lambda: cards(bot_api)))[0]


async def test_unauthorised_click_is_refused_and_card_unchanged(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.inject_callback(CHAT_ID, STRANGER, card["message_id"], button(card, "✅"), username="mallory")
    [answer] = await bot_api.wait_for("answerCallbackQuery")
    assert "not allowed" in answer.params["text"] and answer.params["show_alert"] == "true"
    body = (await app.get("/api/incidents/INC-1")).json()
    assert body["decision"]["state"] == "pending"
    assert [e["actor"] for e in body["timeline"] if e["kind"] == "decision_refused"] == [f"tg:{STRANGER}"]
    assert bot_api.calls("editMessageText") == []


async def test_double_click_applies_once_and_answers_politely(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    data = button(card, "✅")
    bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], data, username="alice")
    bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], data, username="alice")
    bot_api.inject_callback(CHAT_ID, APPROVER2, card["message_id"], button(card, "❌"), username="bob")
    answers = await bot_api.wait_for("answerCallbackQuery", count=3)
    texts = sorted(a.params["text"] for a in answers)
    assert sum("approved;" in t for t in texts) == 1
    assert sum("is already" in t for t in texts) == 2  # approved, or already running or done
    await eventually(lambda: replies_to(bot_api, card["message_id"]))
    await asyncio.sleep(0.3)
    decisions = [m for m in replies_to(bot_api, card["message_id"]) if "Approved by" in m["text"]]
    assert len(decisions) == 1
    body = (await app.get("/api/incidents/INC-1")).json()
    assert len(body["executions"]) == 1  # one approval, one execution


async def test_slash_commands_approve_and_reject_with_reason(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.inject_message(CHAT_ID, APPROVER, "/reject INC-1 maintenance window, disk being migrated", username="alice")
    await bot_api.wait_for("editMessageText", predicate=lambda r: "Rejected by @alice" in r.params["text"])
    edited = bot_api.messages[CHAT_ID][card["message_id"]]["text"]
    assert "maintenance window, disk being migrated" in edited
    bot_api.inject_message(CHAT_ID, APPROVER, "/approve@alertpilot_bot inc-1", username="alice")
    reply = await bot_api.wait_for("sendMessage", predicate=lambda r: "already rejected" in r.params["text"])
    assert reply[0].params["reply_parameters"]["message_id"] > card["message_id"]


async def test_commands_help_start_incidents_status_and_bad_input(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await first_card(app, bot_api)
    expectations = [
        ("/help", "/incidents"),
        ("/start", str(CHAT_ID)),
        ("/incidents", "INC-1"),
        ("/status INC-1", "DiskFull"),
        ("/status", "Usage: /status INC-12"),
        ("/status banana", "is not an incident id"),
        ("/approve INC-999", "no incident INC-999"),
        ("/frobnicate now", "I don't know /frobnicate"),
    ]
    for text, expected in expectations:
        bot_api.inject_message(CHAT_ID, VIEWER, text, username="victor")
        await bot_api.wait_for("sendMessage", predicate=lambda r, e=expected: e in _plain(r.params["text"]))


def _plain(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


async def test_info_buttons_thread_details_and_history(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.inject_callback(CHAT_ID, VIEWER, card["message_id"], button(card, "🔍"))
    details = await eventually(lambda: [m for m in replies_to(bot_api, card["message_id"]) if "alerts" in m["text"]])
    assert "instance" in details[0]["text"] and "db-1" in details[0]["text"] and "runbook_url" in details[0]["text"]
    bot_api.inject_callback(CHAT_ID, VIEWER, card["message_id"], button(card, "📜"))
    history = await eventually(lambda: [m for m in replies_to(bot_api, card["message_id"]) if "history" in m["text"]])
    assert "No earlier incidents" in history[0]["text"]
    answers = await bot_api.wait_for("answerCallbackQuery", count=2)
    assert all(a.params.get("show_alert") in (None, "false") for a in answers)


async def test_reanalyse_button_edits_the_card(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.inject_callback(CHAT_ID, OPERATOR, card["message_id"], button(card, "🔄"))
    [answer] = await bot_api.wait_for("answerCallbackQuery")
    assert "Re-analysing INC-1" in answer.params["text"]
    body = await eventually(lambda: _proposals(app, 2))
    assert body["decision"]["state"] == "pending"
    await bot_api.wait_for("editMessageText", predicate=lambda r: "Awaiting approval" in r.params["text"])


async def _proposals(app: AppUnderTest, count: int) -> dict | None:
    body = (await app.get("/api/incidents/INC-1")).json()
    proposed = [e for e in body["timeline"] if e["kind"] == "proposed"]
    return body if len(proposed) >= count and body["decision"]["state"] == "pending" else None


async def test_stale_or_foreign_callback_data_is_answered(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], "inc0:approve:1")
    [answer] = await bot_api.wait_for("answerCallbackQuery")
    assert "older version" in answer.params["text"]
    assert (await app.get("/api/incidents/INC-1")).json()["decision"]["state"] == "pending"


async def test_telegram_429_and_5xx_delay_but_do_not_lose_the_card(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    bot_api.fail_next("sendMessage", status=429, retry_after=1)
    bot_api.fail_next("sendMessage", status=502)
    started = asyncio.get_running_loop().time()
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    await eventually(lambda: cards(bot_api), timeout=15)
    assert asyncio.get_running_loop().time() - started >= 1.0  # retry_after was honoured
    assert len(cards(bot_api)) == 1
    assert len(bot_api.calls("sendMessage")) == 3


async def test_deleted_card_falls_back_to_a_new_card(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.delete_message(CHAT_ID, card["message_id"])
    bot_api.inject_message(CHAT_ID, APPROVER, "/approve INC-1", username="alice")
    await eventually(lambda: len(cards(bot_api)) == 2)
    new_card = cards(bot_api)[-1]
    assert "pproved by @alice" in new_card["text"] and new_card["message_id"] != card["message_id"]  # approved or running
    await eventually(lambda: replies_to(bot_api, new_card["message_id"]))


async def test_polling_recovers_when_telegram_is_down_at_start(tmp_path, bot_api: FakeBotAPI) -> None:
    bot_api.fail_next("getMe", status=502, times=2)
    running = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
    try:
        await bot_api.wait_for("getUpdates", timeout=15)
        bot_api.inject_message(CHAT_ID, VIEWER, "/help")
        await bot_api.wait_for("sendMessage", predicate=lambda r: "/incidents" in r.params["text"])
        assert len(bot_api.calls("getMe")) >= 3
    finally:
        await running.stop()


async def test_strangers_cannot_read_incidents_outside_the_card_chat(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await first_card(app, bot_api)
    bot_api.inject_message(STRANGER, STRANGER, "/status INC-1", username="mallory")  # a private chat
    bot_api.inject_message(STRANGER, STRANGER, "/incidents", username="mallory")
    refusals = await bot_api.wait_for("sendMessage", count=2, predicate=lambda r: r.params["chat_id"] == STRANGER)
    assert all("needs the viewer role" in _plain(r.params["text"]) for r in refusals)
    assert not any("DiskFull" in r.params["text"] for r in refusals)
    bot_api.inject_message(VIEWER, VIEWER, "/status INC-1", username="victor")  # a viewer may, anywhere
    await bot_api.wait_for("sendMessage", predicate=lambda r: r.params["chat_id"] == VIEWER and "DiskFull" in r.params["text"])


async def test_details_pressed_twice_in_a_minute_posts_once(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    second = datetime.now(UTC).second
    if second >= 55:  # the de-duplication bucket is the clock minute: do not straddle its end
        await asyncio.sleep(61 - second)
    for _ in range(3):
        bot_api.inject_callback(CHAT_ID, VIEWER, card["message_id"], button(card, "🔍"))
    answers = await bot_api.wait_for("answerCallbackQuery", count=3)
    assert sum("Already posted" in a.params["text"] for a in answers) >= 1
    await eventually(lambda: [m for m in replies_to(bot_api, card["message_id"]) if "alerts" in m["text"]])
    await asyncio.sleep(0.3)
    assert len([m for m in replies_to(bot_api, card["message_id"]) if "alerts" in m["text"]]) == 1


async def test_click_on_inaccessible_card_message_still_decides(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    card = await first_card(app, bot_api)
    bot_api.strict_callback_ids = False
    bot_api.inject_update(
        {
            "callback_query": {
                "id": "old-card-click",
                "from": {"id": APPROVER, "is_bot": False, "first_name": "Alice", "username": "alice"},
                "message": {"chat": {"id": CHAT_ID, "type": "supergroup"}, "message_id": card["message_id"], "date": 0},
                "chat_instance": "1",
                "data": button(card, "✅"),
            }
        }
    )
    [answer] = await bot_api.wait_for("answerCallbackQuery")
    assert "approved" in answer.params["text"]
