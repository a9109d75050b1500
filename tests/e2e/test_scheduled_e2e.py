"""End to end: the scheduled work of the real app (daily report, postmortem, reminders, silences) against the
fake Bot API and the WeCom callback. Time is the app's injected clock; the jobs are run the way APScheduler
runs them (``app[JOBS]``), so nothing sleeps until 08:00."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import JOBS, SCHEDULER
from bot.chat.wecom_crypto import WeComCrypto
from tests.e2e.test_telegram_flow import button, cards, replies_to
from tests.e2e.test_wecom_callback_e2e import (
    CALLBACKS,
    WECOM_ROLES,
    click,
    mention,
    open_incidents,
    opened,
    post_callback,
    sealed,
)
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    APPROVER,
    CHAT_ID,
    OPERATOR,
    VIEWER,
    AppUnderTest,
    app_settings,
    eventually,
    fixture,
    scratch_postgres_database,
    start_app,
)

# 08:00:30 in Asia/Taipei, the default report time and zone; the host's zone does not matter.
REPORT_TIME = datetime(2026, 11, 24, 0, 0, 30, tzinfo=UTC)
STARTED = datetime(2026, 11, 24, 5, 6, 48, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def reports(bot_api: FakeBotAPI) -> list[dict]:
    return [m for m in bot_api.sent_messages(CHAT_ID) if "Daily report" in m["text"]]


def alert_at(when: datetime, *, ends: datetime | None = None, service: str = "db") -> dict[str, Any]:
    payload = copy.deepcopy(fixture("01-firing-one-alert.json"))
    status = "firing" if ends is None else "resolved"
    payload["status"] = status
    for alert in payload["alerts"]:
        alert["status"] = status
        alert["labels"]["service"] = service
        alert["startsAt"] = when.isoformat()
        if ends is not None:
            alert["endsAt"] = ends.isoformat()
    return payload


async def _two_replicas(database_url: str, tmp_path: Path, fakes: list[FakeBotAPI], clock: Clock) -> None:
    """Two app instances on one database, each with its own Bot API endpoint (only one of them polls: the
    polling lease): the report is one outbox row, so exactly one of them sends it, once."""
    apps = []
    for number, fake in enumerate(fakes):
        folder = tmp_path / f"replica{number}"
        folder.mkdir()
        # auto_migrate: both start together on an empty database and migrate it once (the lock)
        settings = app_settings(folder, bot_api=fake.base_url, database_url=database_url, auto_migrate=True)
        apps.append(await start_app(settings, clock=clock))
    try:
        await eventually(lambda: [bool(f.calls("getUpdates")) for f in fakes].count(True) == 1)
        # both replicas' schedulers fire at 08:00, and both catch up at start-up: four tries, one report
        jobs = [app.app[JOBS] for app in apps]
        await asyncio.gather(*(j.daily_report() for j in jobs), *(j.catch_up() for j in jobs))
        await eventually(lambda: sum(len(reports(f)) for f in fakes) >= 1)
        await asyncio.sleep(0.5)  # a second copy would be on its way by now
        assert sum(len(reports(f)) for f in fakes) == 1
        [report] = [m for f in fakes for m in reports(f)]
        assert "2026-11-23" in report["text"]  # the previous day in Asia/Taipei
        clock.advance(hours=2)  # a restart within the grace window: the catch-up finds it done
        await asyncio.gather(*(j.catch_up() for j in jobs))
        await asyncio.sleep(0.3)
        assert sum(len(reports(f)) for f in fakes) == 1
    finally:
        for app in apps:
            await app.stop()


async def test_two_replicas_on_one_sqlite_file_send_the_daily_report_once(tmp_path: Path) -> None:
    async with FakeBotAPI(token="123456:TEST-token") as one, FakeBotAPI(token="123456:TEST-token") as two:
        await _two_replicas(f"sqlite+aiosqlite:///{tmp_path}/shared.db", tmp_path, [one, two], Clock(REPORT_TIME))


async def test_two_replicas_on_postgresql_send_the_daily_report_once(tmp_path: Path) -> None:
    url, drop = await scratch_postgres_database()
    try:
        async with FakeBotAPI(token="123456:TEST-token") as one, FakeBotAPI(token="123456:TEST-token") as two:
            await _two_replicas(url, tmp_path, [one, two], Clock(REPORT_TIME))
    finally:
        await drop()


async def test_the_scheduler_runs_the_jobs_and_catches_up_at_start_up(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    """With the real scheduler: the jobs are registered at the report time in the configured zone, and the
    start-up catch-up sends the report that is due (the clock says 08:00:30 Taipei) without waiting."""
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url), clock=Clock(REPORT_TIME), scheduler=True)
    try:
        scheduler = app.app[SCHEDULER]
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"daily-report", "weekly-digest", "report-catch-up", "silence-expiry", "approval-reminders",
                             "postmortems", "housekeeping"}
        assert str(jobs["daily-report"].trigger.timezone) == "Asia/Taipei"
        assert "hour='8'" in str(jobs["daily-report"].trigger) and "minute='0'" in str(jobs["daily-report"].trigger)
        await eventually(lambda: reports(bot_api), timeout=15)
    finally:
        await app.stop()
    assert len(reports(bot_api)) == 1


async def test_report_command_answers_on_demand(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    await eventually(lambda: cards(bot_api))
    bot_api.inject_message(CHAT_ID, VIEWER, "/report today")
    [answer] = await bot_api.wait_for("sendMessage", predicate=lambda r: "Report" in r.params["text"])
    assert "DiskFull" in answer.params["text"]  # the noisiest alertname of today
    bot_api.inject_message(CHAT_ID, VIEWER, "/report fortnight")
    [usage] = await bot_api.wait_for("sendMessage", predicate=lambda r: "/report [today|yesterday|7d]" in r.params["text"])
    assert usage.params["reply_parameters"]["message_id"]


async def with_a_card(tmp_path: Path, bot_api: FakeBotAPI) -> tuple[AppUnderTest, Clock, dict]:
    """The app on a clock at STARTED, with INC-1 (DiskFull, awaiting one approver) on its card."""
    clock = Clock(STARTED)
    app = await start_app(app_settings(tmp_path, bot_api=bot_api.base_url), clock=clock)
    await bot_api.wait_for("getUpdates")
    await app.post_alerts(alert_at(STARTED))
    return app, clock, (await eventually(lambda: cards(bot_api)))[0]


async def test_postmortem_is_threaded_under_the_card_once(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app, clock, card = await with_a_card(tmp_path, bot_api)
    try:
        clock.advance(minutes=25)
        await app.post_alerts(alert_at(STARTED, ends=clock.now))
        await eventually(lambda: any("resolved" in m["text"].lower() for m in replies_to(bot_api, card["message_id"])))
        jobs = app.app[JOBS]
        await asyncio.gather(jobs.postmortems_due(), jobs.postmortems_due())
        posts = await eventually(lambda: [m for m in replies_to(bot_api, card["message_id"]) if "Postmortem" in m["text"]])
        assert "INC-1" in posts[0]["text"] and "25 min" in posts[0]["text"]
        await jobs.postmortems_due()
        await asyncio.sleep(0.3)
        assert len([m for m in bot_api.sent_messages(CHAT_ID) if "Postmortem" in m["text"]]) == 1
        bot_api.inject_message(CHAT_ID, VIEWER, "/postmortem INC-1")
        await eventually(lambda: len([m for m in bot_api.sent_messages(CHAT_ID) if "Postmortem" in m["text"]]) == 2)
    finally:
        await app.stop()


async def test_reminder_then_escalation(tmp_path: Path, bot_api: FakeBotAPI) -> None:
    app, clock, card = await with_a_card(tmp_path, bot_api)
    try:
        jobs = app.app[JOBS]
        clock.advance(minutes=10)
        await jobs.approval_reminders()
        clock.advance(minutes=6)  # 16 min awaiting approval: one reminder
        await jobs.approval_reminders()
        await jobs.approval_reminders()
        reminder = await eventually(lambda: [m for m in replies_to(bot_api, card["message_id"]) if "waiting" in m["text"]])
        assert f"tg://user?id={APPROVER}" in str(reminder[0].get("entities")) or str(APPROVER) in reminder[0]["text"]
        clock.advance(minutes=16)  # a second interval: escalated to the report chats
        await jobs.approval_reminders()
        await eventually(lambda: [m for m in bot_api.sent_messages(CHAT_ID) if "escalat" in m["text"].lower()])
        await jobs.approval_reminders()
        await asyncio.sleep(0.3)
        assert len([m for m in bot_api.sent_messages(CHAT_ID) if "escalat" in m["text"].lower()]) == 1
        assert len([m for m in replies_to(bot_api, card["message_id"]) if "waiting" in m["text"]]) <= 2
    finally:
        await app.stop()


async def test_silence_command_mutes_matching_alerts_and_unsilence(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    bot_api.inject_message(CHAT_ID, VIEWER, "/silence db 2h maintenance")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "not allowed" in r.params["text"])
    bot_api.inject_message(CHAT_ID, OPERATOR, "/silence db 2h maintenance", username="olga")
    [created] = await bot_api.wait_for("sendMessage", predicate=lambda r: "service=db" in r.params["text"])
    response = await app.post_alerts(fixture("01-firing-one-alert.json"))
    assert response.status_code == 200 and response.json()["incidents"] == ["INC-1"]  # stored and counted
    await asyncio.sleep(0.5)
    assert cards(bot_api) == []  # but no card
    bot_api.inject_message(CHAT_ID, VIEWER, "/silences")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "maintenance" in r.params["text"]
                           and r.params["text"] != created.params["text"])
    bot_api.inject_message(CHAT_ID, OPERATOR, "/unsilence 1", username="olga")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "#1" in r.params["text"] and "removed" in r.params["text"].lower())
    await eventually(lambda: cards(bot_api))  # the firing incident is no longer muted: its card comes now
    bot_api.inject_message(CHAT_ID, OPERATOR, "/silence 2h")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "/silence" in r.params["text"] and "usage" in r.params["text"].lower()
                           or "label=value" in r.params["text"])


async def test_silence_button_silences_the_service_for_an_hour(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    await app.post_alerts(fixture("01-firing-one-alert.json"))
    card = (await eventually(lambda: cards(bot_api)))[0]
    labels = [b["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row]
    assert "🔕 Silence 1h" in labels
    bot_api.inject_callback(CHAT_ID, OPERATOR, card["message_id"], button(card, "🔕"), username="olga")
    [answer] = await bot_api.wait_for("answerCallbackQuery")
    assert "silenced" in answer.params["text"].lower() and answer.params.get("show_alert") != "true"
    await eventually(lambda: "🔕 Silence 1h" not in [
        b["text"] for row in bot_api.messages[CHAT_ID][card["message_id"]]["reply_markup"]["inline_keyboard"] for b in row
    ])
    silences = (await app.get("/api/incidents/INC-1")).json()
    assert silences["ref"] == "INC-1"
    bot_api.inject_message(CHAT_ID, VIEWER, "/silences")
    await bot_api.wait_for("sendMessage", predicate=lambda r: "service=db" in r.params["text"])


async def test_wecom_report_silence_and_silence_button(tmp_path: Path) -> None:
    crypto = WeComCrypto(CALLBACKS["token"], CALLBACKS["encoding_aes_key"], CALLBACKS["receive_id"])
    now = datetime.fromtimestamp(int(CALLBACKS["mention_text"]["query"]["timestamp"]), UTC)
    settings = app_settings(tmp_path, roles=WECOM_ROLES, wecom_bot_token=CALLBACKS["token"],
                            wecom_bot_aes_key=CALLBACKS["encoding_aes_key"])
    app = await start_app(settings, clock=Clock(now))
    try:
        async def ask(text: str) -> dict[str, Any]:
            return opened(crypto, await post_callback(app, *sealed(crypto, mention(text))))

        report = await ask("@alertpilot report today")
        assert report["msgtype"] == "stream" and report["stream"]["finish"] is True
        assert "Report" in report["stream"]["content"]
        bad = await ask("@alertpilot /report fortnight")
        assert "/report [today|yesterday|7d]" in bad["stream"]["content"]
        created = await ask("@alertpilot silence namespace=prod alertname=DiskFull 30m disk migration")
        assert "alertname=DiskFull" in created["stream"]["content"]
        listed = await ask("@alertpilot silences")
        assert "disk migration" in listed["stream"]["content"]
        removed = await ask("@alertpilot unsilence 1")
        assert "#1" in removed["stream"]["content"]
        missing = await ask("@alertpilot postmortem INC-7")
        assert "INC-7" in missing["stream"]["content"]  # not found, said clearly

        await open_incidents(app, 1)
        card = (await ask("@alertpilot INC-1"))["template_card"]
        assert [b["key"] for b in card["button_list"]] == ["approve", "reject", "details", "silence"]
        reply = opened(crypto, await post_callback(app, *sealed(crypto, click(card["task_id"], "silence"))))
        assert reply["response_type"] == "update_template_card"
        assert "silence" in reply["template_card"]["sub_title_text"].lower()
        assert [b["key"] for b in reply["template_card"]["button_list"]] == ["approve", "reject", "details"]
        again = await ask("@alertpilot silence INC-1 2h still migrating")  # by its incident: the same matchers
        assert "service=db" in again["stream"]["content"] and "still migrating" in again["stream"]["content"]
    finally:
        await app.stop()
