"""End to end: the real app, a fake Bot API over loopback, real Alertmanager payloads."""

from __future__ import annotations

from tests.fakes.botapi import FakeBotAPI
from tests.harness import APPROVER, CHAT_ID, AppUnderTest, eventually, fixture


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
    assert buttons == ["✅ Approve", "❌ Reject", "🔍 Details", "🔄 Re-analyse", "📜 History"]


async def test_approve_button_edits_card_and_threads_reply(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    await eventually(lambda: cards(bot_api))
    card = cards(bot_api)[0]
    approve = card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    bot_api.inject_callback(CHAT_ID, APPROVER, card["message_id"], approve, username="alice")

    answers = await bot_api.wait_for("answerCallbackQuery")
    assert "approved" in answers[0].params["text"].lower()
    await bot_api.wait_for("editMessageText", predicate=lambda r: "Approved by @alice" in r.params["text"])
    reply = await bot_api.wait_for(
        "sendMessage", predicate=lambda r: (r.params.get("reply_parameters") or {}).get("message_id") == card["message_id"]
    )
    assert "Approved by @alice" in reply[0].params["text"]
    edited = bot_api.messages[CHAT_ID][card["message_id"]]
    labels = [b["text"] for row in edited["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["🔍 Details", "📜 History"]
    assert "execution not enabled yet" in edited["text"]
