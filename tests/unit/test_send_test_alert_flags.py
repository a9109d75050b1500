"""`alertpilot send-test-alert --severity … --service …`: the flags are validated by argparse, the incident takes
them (checked through the read API of a running app), and the command says where the card appears."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app import main
from bot.cli import card_chats, sample_labels, send_test_alert
from tests.fakes.botapi import FakeBotAPI
from tests.harness import CHAT_ID, app_settings, start_app

KEY, OTHER = "0a1b2c3d-robot-key-0001", "ffff0000-robot-key-0099"


@pytest.mark.parametrize("flags", [
    ["--severity", ""], ["--severity", "very critical"], ["--severity", "x" * 33], ["--severity", "crit!cal"],
    ["--service", ""], ["--service", "API"], ["--service", "-api"], ["--service", "api-"], ["--service", "a" * 51],
    ["--service", "demo api"], ["--service", "../etc"],
])
def test_absurd_flags_are_argparse_errors(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["send-test-alert", f"{flags[0]}={flags[1]}"])  # "=": a value such as -api is not taken for an option
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flags[0]}:" in err and ("is not a severity" in err or "is not a service name" in err)


async def test_the_incident_takes_the_severity_and_service(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = app_settings(tmp_path)  # no chat configured: cards go to the console
    running = await start_app(settings)
    try:
        assert await send_test_alert(settings, resolve=None, url=running.base_url, severity="warning",
                                     service="payments-api") == 0
        out = capsys.readouterr().out
        incident = (await running.get("/api/incidents/INC-1")).json()
        assert (incident["severity"], incident["service"]) == ("warning", "payments-api")
        [alert] = incident["alerts"]
        test_id = out.split("--resolve ")[1].split()[0]
        assert alert["labels"]["deployment"] == "payments-api" and alert["labels"]["pod"] == f"payments-api-{test_id}"
        assert f"test alert {test_id} fired: INC-1 (severity warning, service payments-api)." in out
        assert "the card appears in the console of the running alertpilot (no chat configured) in a moment." in out
        # the resolve hint repeats the flags that differ from the defaults
        assert f"alertpilot send-test-alert --resolve {test_id} --severity warning --service payments-api" in out

        assert await send_test_alert(settings, resolve=test_id, url=running.base_url, severity="warning",
                                     service="payments-api") == 0
        assert (await running.get("/api/incidents/INC-1")).json()["status"] == "resolved"
        assert "resolved (INC-1)" in capsys.readouterr().out
    finally:
        await running.stop()


async def test_defaults_are_a_critical_demo_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = app_settings(tmp_path)
    running = await start_app(settings)
    try:
        assert await send_test_alert(settings, resolve=None, url=running.base_url) == 0
        incident = (await running.get("/api/incidents/INC-1")).json()
        assert (incident["severity"], incident["service"]) == ("critical", "demo-api")
        out = capsys.readouterr().out
        assert "resolve it with: alertpilot send-test-alert --resolve " in out and "--service" not in out
    finally:
        await running.stop()


async def test_the_card_chat_is_named_by_route_or_default(
    tmp_path: Path, bot_api: FakeBotAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = app_settings(tmp_path, bot_api=bot_api.base_url, routes="payments: service=payments -> tg:-100999")
    running = await start_app(settings)
    try:
        assert await send_test_alert(settings, resolve=None, url=running.base_url, service="payments") == 0
        assert "the card appears in Telegram chat -100999 (route payments: service=payments) in a moment." in \
            capsys.readouterr().out
        assert await send_test_alert(settings, resolve=None, url=running.base_url, service="api") == 0
        out = capsys.readouterr().out
        assert "fired: INC-2" in out and f"the card appears in Telegram chat {CHAT_ID} in a moment." in out
        # and it did: each card went to the chat the command named
        await bot_api.wait_for("sendMessage", count=2)
        assert {m["chat_id"] for m in bot_api.sent_messages()} == {-100999, CHAT_ID}
    finally:
        await running.stop()


def test_wecom_robots_are_named_by_masked_key(tmp_path: Path) -> None:
    settings = app_settings(tmp_path, wecom_webhook_keys=f"{KEY},{OTHER}", routes=f"team=db -> wecom:{OTHER}")
    assert card_chats(settings, sample_labels("abc123")) == "WeCom robot 0a1b…01, WeCom robot ffff…99"
    routed = card_chats(settings, {**sample_labels("abc123"), "team": "db"})
    assert routed == "WeCom robot ffff…99 (route route1: team=db)"
    assert KEY not in routed and OTHER not in routed
