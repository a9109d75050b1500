"""End to end: the real app with a Telegram group and two WeCom group robots (fake servers over loopback).
An alert becomes a markdown card at each robot; what happens next in Telegram reaches the robots as
messages that name the incident (robots cannot edit or thread)."""

from __future__ import annotations

from pathlib import Path

from bot.app import BANNER, banner_text
from bot.chat.wecom import robot_id
from bot.render import html_to_text
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.wecom import FakeWeCom
from tests.harness import APPROVER, CHAT_ID, AppUnderTest, app_settings, eventually, fixture, start_app

KEYS = ("robot-key-0001", "robot-key-0002")


async def test_alert_reaches_the_robots_and_a_telegram_approval_reaches_them_too(
    tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    async with FakeWeCom(keys=KEYS) as wecom:
        settings = app_settings(
            tmp_path, bot_api=bot_api.base_url, wecom_webhook_keys=",".join(KEYS), wecom_api_base=wecom.base_url,
            wecom_oncall="zhangsan",
        )
        app = await start_app(settings)
        try:
            await bot_api.wait_for("getUpdates")
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            cards = await eventually(lambda: [s for s in wecom.delivered() if "DiskFull" in s.content
                                              and "kubectl" in s.content] if len(wecom.delivered()) >= 2 else None)
            assert sorted(s.key for s in cards) == sorted(KEYS)  # one card per robot
            assert all(s.msgtype == "markdown" and "INC-1" in s.content.splitlines()[0] for s in cards)
            assert all("<@zhangsan>" in s.content for s in cards)

            # approved in Telegram: both robots learn it, and the (dry-run) execution, each naming INC-1
            telegram_card = await eventually(
                lambda: next((m for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup")), None)
            )
            approve = telegram_card["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            bot_api.inject_callback(CHAT_ID, APPROVER, telegram_card["message_id"], approve, username="alice")

            def robot_texts(key: str) -> list[str]:
                return [s.content for s in wecom.delivered(key)]

            for key in KEYS:
                await eventually(lambda key=key: any("Approved by @alice" in t for t in robot_texts(key)))
                await eventually(lambda key=key: any("DRY RUN" in t and "complete" in t for t in robot_texts(key)))
                assert all("INC-1" in t.splitlines()[0] for t in robot_texts(key))
            # the card itself is never sent again (robots cannot edit): one card per robot
            assert len([s for s in wecom.delivered() if "Blast radius" in s.content]) == 2
            body = (await app.get("/api/incidents/INC-1")).json()
            chats = {m["chat_id"] for m in body["messages"] if m["channel"] == "wecom"}
            assert chats == {robot_id(k) for k in KEYS} and not any(k in str(body) for k in KEYS)  # keys stay secret
            assert "Approved by @alice" in html_to_text(str(bot_api.sent_messages(CHAT_ID)))
        finally:
            await app.stop()


async def test_wecom_only_deployment_posts_cards_without_telegram(tmp_path: Path) -> None:
    async with FakeWeCom(keys=KEYS[:1]) as wecom:
        app = await start_app(app_settings(tmp_path, wecom_webhook_keys=KEYS[0], wecom_api_base=wecom.base_url))
        try:
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            [card] = await eventually(lambda: wecom.delivered() or None)
            assert "INC-1" in card.content and "DiskFull" in card.content
        finally:
            await app.stop()


async def test_invalid_robot_key_is_shown_as_a_configuration_error_at_the_next_start(tmp_path: Path) -> None:
    async with FakeWeCom(keys=KEYS[:1]) as wecom:
        settings = app_settings(tmp_path, wecom_webhook_keys="unknown-robot-key", wecom_api_base=wecom.base_url)
        app = await start_app(settings)
        try:
            await app.post_alerts(fixture("01-firing-one-alert.json"))
            await eventually(lambda: [s for s in wecom.sends if s.errcode == 93000] or None)
            stats = await eventually(lambda: _failed(app))
            assert stats["outbox"]["failed"] >= 1
            assert app.runner.app[BANNER].problems == ()  # nothing known at the first start
        finally:
            await app.stop()
        again = await start_app(settings)
        try:
            [problem] = again.runner.app[BANNER].problems
            assert "93000" in problem and "ALERTPILOT_WECOM_WEBHOOK_KEYS" in problem and "unknown-robot-key" not in problem
            assert problem in banner_text(settings, again.runner.app[BANNER], again.base_url)
        finally:
            await again.stop()


async def _failed(app: AppUnderTest) -> dict | None:
    stats = (await app.get("/api/stats")).json()
    return stats if stats["outbox"].get("failed") else None
