"""End to end (issue 9): an alert storm through the real app and the fake Bot API, at Telegram's real group
budget (20 messages a minute): one digest, cards for the most severe, nothing lost."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from bot.chat.wecom_crypto import WeComCrypto
from bot.render import html_to_text
from services.ports import ChatTarget
from tests.e2e.test_wecom_callback_e2e import CALLBACKS, mention, opened, post_callback, sealed
from tests.e2e.test_wecom_callback_e2e import start as start_wecom
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.wecom import FakeWeCom
from tests.harness import CHAT_ID, VIEWER, alertmanager_payload, app_settings, eventually, start_app
from tests.unit.test_render import PLAUSIBLE

SEVERITIES = ("critical", "warning", "info", "error")
STORM = 40
ROBOT = "robot-key-0001"


def storm_payload(n: int) -> dict[str, Any]:
    payload = alertmanager_payload(f"Storm{n:02d}", {f"host-{n}": "firing"})
    labels = payload["alerts"][0]["labels"]
    labels.update(severity=SEVERITIES[n % 4], service=f"svc{n % 5}")
    payload["commonLabels"] = dict(labels)
    return payload


def digests(bot_api: FakeBotAPI, chat_id: int = CHAT_ID) -> list[dict[str, Any]]:
    return [m for m in bot_api.sent_messages(chat_id) if "new incidents" in m["text"]]


def most_in_a_minute(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for t in times if start <= t < start + 60.0) for start in times), default=0)


async def test_storm_e2e_one_digest_at_most_20_messages_a_minute_nothing_lost(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    # the harness relaxes pacing; here Telegram's real limits: 1 message a second per chat, 20 a minute per group
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url, group_rate_per_minute=20.0,
                                       chat_rate_per_second=1.0))
    try:
        await bot_api.wait_for("getUpdates")
        responses = await asyncio.gather(*(app.post_alerts(storm_payload(n)) for n in range(STORM)))
        assert all(r.status_code == 200 for r in responses)
        opened = {ref for r in responses for ref in r.json()["incidents"]}
        assert len(opened) == STORM

        in_chat = lambda: [r for r in bot_api.calls("sendMessage") if r.params.get("chat_id") == CHAT_ID]  # noqa: E731
        await eventually(lambda: digests(bot_api) and len(in_chat()) >= 20, timeout=45.0, interval=0.2)
        await asyncio.sleep(3.0)  # and nothing more goes within the minute
        sends = in_chat()
        assert most_in_a_minute([r.at for r in sends]) <= 20
        assert len(sends) == 20
        [digest] = digests(bot_api)
        labels = [b["text"] for row in digest["reply_markup"]["inline_keyboard"] for b in row]
        assert labels == ["📋 List incidents"]
        messages = bot_api.sent_messages(CHAT_ID)
        cards = [m for m in messages if m is not digest]
        assert 0 < len(cards) <= 19

        # nothing lost: every incident is open, in the API and in /incidents (asked in a private chat: the
        # group's budget is spent for this minute)
        body = (await app.get("/api/incidents", status="firing", limit=100)).json()
        severity = {i["ref"]: i["severity"] for i in body["items"]}
        assert set(severity) >= opened
        # cards after the digest are the storm's kept ones: the most severe (10 critical + 10 error incidents,
        # and at most 19 cards in all); the first cards may have gone before the storm was seen
        after = messages[messages.index(digest) + 1:]
        kept = [re.search(r"INC-\d+", m["text"]).group(0) for m in after]  # type: ignore[union-attr]
        # (a card whose send was already under way when the storm was seen may still follow the digest: one
        # lower-severity card at most — seen once in ~5 full runs; the service tests pin the exact choice)
        assert sum(severity[ref] not in ("critical", "error") for ref in kept) <= 1, [severity[r] for r in kept]
        folded = set(re.findall(r"INC-\d+", digest["text"]))
        assert folded and not folded & {re.search(r"INC-\d+", m["text"]).group(0) for m in cards}  # type: ignore[union-attr]
        bot_api.inject_message(VIEWER, VIEWER, "/incidents")
        [answer] = await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == VIEWER)
        assert f"Open incidents ({STORM}, newest 15 shown)" in html_to_text(answer.params["text"])
        # and /status answers for an incident that has no card in the group
        ref = sorted(folded)[0]
        bot_api.inject_message(VIEWER, VIEWER, f"/status {ref}")
        await bot_api.wait_for("sendMessage", predicate=lambda r: r.params.get("chat_id") == VIEWER
                               and ref in r.params["text"] and "Open incidents" not in r.params["text"])
    finally:
        await app.stop()


async def test_storm_e2e_list_button_answers_like_incidents(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url))
    try:
        await bot_api.wait_for("getUpdates")
        await asyncio.gather(*(app.post_alerts(storm_payload(n)) for n in range(3)))
        await app.deps.chat.say(ChatTarget("telegram", str(CHAT_ID)), "storm_digest", PLAUSIBLE["storm_digest"][0])
        digest = (await eventually(lambda: digests(bot_api)))[0]
        [[button]] = digest["reply_markup"]["inline_keyboard"]
        assert button["callback_data"] == "lst1:incidents"
        bot_api.inject_callback(CHAT_ID, VIEWER, digest["message_id"], button["callback_data"])
        await bot_api.wait_for("answerCallbackQuery")
        [answer] = await bot_api.wait_for("sendMessage", predicate=lambda r: "Open incidents (3)" in html_to_text(r.params["text"]))
        assert answer.params["chat_id"] == CHAT_ID
    finally:
        await app.stop()


async def test_storm_e2e_wecom_robot_gets_one_digest_and_status_still_answers(tmp_path: Path) -> None:
    crypto = WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], CALLBACKS["receive_id"])
    async with FakeWeCom(keys=(ROBOT,)) as wecom:  # 20 messages a minute per robot (the real limit, the default)
        app = await start_wecom(tmp_path, wecom_webhook_keys=ROBOT, wecom_api_base=wecom.base_url)
        try:
            responses = await asyncio.gather(*(app.post_alerts(storm_payload(n)) for n in range(STORM)))
            assert len({ref for r in responses for ref in r.json()["incidents"]}) == STORM
            robot_digests = lambda: [s for s in wecom.delivered() if "new incidents" in s.content]  # noqa: E731
            await eventually(lambda: robot_digests() and len(wecom.delivered()) >= 20, timeout=45.0, interval=0.2)
            await asyncio.sleep(2.0)
            assert len(wecom.sends) == 20  # well within a minute of the first: the robot's budget
            [digest] = robot_digests()
            assert "@alertpilot incidents" in digest.content
            folded = sorted(set(re.findall(r"INC-\d+", digest.content)))
            assert folded
            # "@alertpilot status INC-n" answers for an incident that has no card at the robot
            reply = opened(crypto, await post_callback(app, *sealed(crypto, mention(f"@alertpilot status {folded[0]}"))))
            assert folded[0] in json.dumps(reply, ensure_ascii=False)
        finally:
            await app.stop()
