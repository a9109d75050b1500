"""End to end with an AI model: the real app, a fake Bot API and a fake OpenAI-compatible server over
loopback, reached through ALERTPILOT_AI_BASE_URL like a real deployment."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bot.render import html_to_text
from tests.e2e.conftest import SLA, start
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.openai import VALID_PROPOSAL, FakeOpenAI, Reply
from tests.harness import CHAT_ID, OPERATOR, VIEWER, AppUnderTest, eventually, fixture


def proposal_cards(bot_api: FakeBotAPI) -> list[dict[str, Any]]:
    """Every card state the chat saw that shows a proposal (sent or edited), oldest first."""
    seen = []
    for request in bot_api.calls("sendMessage") + bot_api.calls("editMessageText"):
        text = request.params.get("text", "")
        if request.params.get("chat_id") == CHAT_ID and "Proposal:" in text and "INC-" in text:
            seen.append({"at": request.at, "text": html_to_text(text), "params": request.params})
    return sorted(seen, key=lambda c: c["at"])


async def test_model_answer_shows_on_the_card_with_its_name(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    app = await start(tmp_path, bot_api, model)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "AI fake-model" in card["text"] and VALID_PROPOSAL["action"] in card["text"]
        assert "confidence" in card["text"]
        [request] = model.requests
        assert request["model"] == "fake-model" and request["response_format"]["type"] == "json_schema"
        assert model.calls[0].headers["Authorization"] == "Bearer sk-test"
        decisions = (await app.get("/api/incidents/INC-1")).json()["decisions"]
        assert decisions[0]["source"] == "ai" and decisions[0]["prompt_tokens"] == 120
        metrics = (await app.http.get("/metrics")).text
        assert 'alertpilot_decisions_total{source="ai",fallback_reason="none"} 1' in metrics
        assert 'alertpilot_ai_latency_seconds_count{purpose="propose"} 1' in metrics
    finally:
        await app.stop()


async def test_hanging_model_gives_a_rule_card_within_the_sla(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    model.default = Reply.hang()
    app = await start(tmp_path, bot_api, model)
    try:
        posted = time.monotonic()
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api), timeout=SLA + 5)
        assert card["at"] - posted < SLA + 2
        assert "AI timed out — rule-based proposal" in card["text"] and "— rules" in card["text"]
        assert "confidence" not in card["text"]
    finally:
        await app.stop()  # the hanging request is cancelled with the app


async def test_streamed_and_schema_less_servers_still_work(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    model.reject_formats({"json_schema"})
    model.reply_stream(VALID_PROPOSAL, chunks=5)
    app = await start(tmp_path, bot_api, model)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "AI fake-model" in card["text"]
        assert model.response_formats() == ["json_schema", "json_object"]
    finally:
        await app.stop()


async def test_server_error_and_truncated_json_fall_back_to_rules(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    model.reply_status(500, "upstream exploded")
    app = await start(tmp_path, bot_api, model)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "AI unavailable — rule-based proposal" in card["text"]
        model.reply_text('{"root_cause": "disk", "action": "kubectl', times=2)
        second = dict(fixture("01-firing-one-alert.json"), groupKey="other-group")
        second["alerts"] = [dict(a, fingerprint="ffff000011112222") for a in second["alerts"]]
        await app.post_alerts(second)
        await eventually(lambda: len(proposal_cards(bot_api)) == 2)
        assert "AI gave no usable answer — rule-based proposal" in proposal_cards(bot_api)[1]["text"]
    finally:
        await app.stop()


async def test_reanalyse_button_asks_the_model_again_and_threads_the_change(
    tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI
) -> None:
    model.reply_status(500, "down")
    app = await start(tmp_path, bot_api, model)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        [card] = await eventually(lambda: proposal_cards(bot_api))
        assert "— rules" in card["text"]
        sent = [m for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup") and "INC-1" in m["text"]][0]
        message_id = sent["message_id"]
        keyboard = sent["reply_markup"]["inline_keyboard"]
        reanalyse = next(b["callback_data"] for row in keyboard for b in row if "Re-analyse" in b["text"])
        bot_api.inject_callback(CHAT_ID, OPERATOR, message_id, reanalyse, username="olga")
        thread = await bot_api.wait_for("sendMessage", predicate=lambda r: "re-analysed" in r.params.get("text", ""))
        assert thread[0].params["reply_parameters"]["message_id"] == message_id
        assert VALID_PROPOSAL["action"] in thread[0].params["text"]
        await eventually(lambda: "AI fake-model" in proposal_cards(bot_api)[-1]["text"])
        assert proposal_cards(bot_api)[-1]["params"].get("message_id") == message_id  # the same card, edited
    finally:
        await app.stop()


async def test_summary_shows_typing_and_threads_the_answer(tmp_path: Path, bot_api: FakeBotAPI, model: FakeOpenAI) -> None:
    app = await start(tmp_path, bot_api, model)
    try:
        await app.post_alerts(fixture("01-firing-one-alert.json"))
        await eventually(lambda: proposal_cards(bot_api))
        model.reply(Reply.slow(0.5, "Disk on db-1 filled up with logs. <b>Nothing</b> was run yet."))
        command = bot_api.inject_message(CHAT_ID, VIEWER, "/summary INC-1")
        answer = await bot_api.wait_for("sendMessage", predicate=lambda r: "Summary of INC-1" in r.params.get("text", ""))
        params = answer[0].params
        assert params["reply_parameters"]["message_id"] == command["message"]["message_id"]
        assert "&lt;b&gt;Nothing&lt;/b&gt;" in params["text"]  # model text is escaped
        typing = bot_api.calls("sendChatAction")
        assert typing and typing[0].params["action"] == "typing" and typing[0].at < answer[0].at
    finally:
        await app.stop()


async def test_ask_and_kb_without_a_model_answer_from_the_data(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    await eventually(lambda: proposal_cards(bot_api))
    bot_api.inject_message(CHAT_ID, OPERATOR, "/note INC-1 db-1 fills up when log rotation is off")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "Note added to INC-1" in r.params.get("text", ""))
    bot_api.inject_message(CHAT_ID, VIEWER, "/kb log rotation")
    kb = await bot_api.wait_for("sendMessage", predicate=lambda r: "Knowledge base: log rotation" in r.params.get("text", ""))
    assert "INC-1" in kb[0].params["text"]
    bot_api.inject_message(CHAT_ID, VIEWER, "/ask is the disk full?")
    ask = await bot_api.wait_for("sendMessage", predicate=lambda r: "no AI model configured" in r.params.get("text", ""))
    assert "INC-1" in ask[0].params["text"]
    bot_api.inject_message(CHAT_ID, VIEWER, "/ask")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "Usage" in r.params.get("text", "") and "/ask" in r.params["text"])
    bot_api.inject_message(CHAT_ID, VIEWER, "/playbooks")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "Playbooks" in r.params.get("text", ""))
