"""`alertpilot doctor` end to end: main(["doctor"]) reads the environment and checks fake peers on 127.0.0.1 (Bot
API, WeCom, an OpenAI-compatible model, kubectl): all healthy, then one fault at a time, each named with its fix
and a non-zero exit."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import structlog

from bot.app import main
from bot.doctor import TOKEN_FIX
from storage.db import Database
from tests.fakes.botapi import FakeBotAPI
from tests.fakes.kubectl import FakeKubectl
from tests.fakes.openai import FakeOpenAI
from tests.fakes.wecom import FakeWeCom
from tests.harness import BOT_TOKEN, CHAT_ID, free_port

KEY = "0a1b2c3d-robot-key-0001"
API_KEY = "sk-doctor-test-key"
VERSION = {"clientVersion": {"gitVersion": "v1.30.2"}, "serverVersion": {"gitVersion": "v1.29.4"}}


@dataclass
class Peers:
    bot_api: FakeBotAPI
    wecom: FakeWeCom
    model: FakeOpenAI
    kubectl: FakeKubectl


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures structlog and logging for the process (on the captured stderr): undo it afterwards."""
    saved, handlers = structlog.get_config(), logging.root.handlers[:]
    yield
    structlog.configure(**saved)
    logging.root.handlers[:] = handlers


@pytest.fixture
async def peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Peers]:
    database = f"sqlite+aiosqlite:///{tmp_path}/alertpilot.db"
    db = Database(database)
    await db.create_schema()  # as a first `make run` leaves it
    await db.dispose()
    kubectl = FakeKubectl(tmp_path / "kubectl").install()
    kubectl.on("version", stdout=json.dumps(VERSION))
    async with (
        FakeBotAPI(token=BOT_TOKEN, bot_username="alertpilot_bot", chat_lookup=True) as bot_api,
        FakeWeCom(keys=(KEY,)) as wecom,
        FakeOpenAI(model="fake-model") as model,
    ):
        model.default = {"ok": True}
        for name, value in {
            "DATABASE_URL": database,
            "TELEGRAM_TOKEN": BOT_TOKEN, "TELEGRAM_API_BASE": bot_api.base_url, "TELEGRAM_CHAT_ID": str(CHAT_ID),
            "WECOM_WEBHOOK_KEYS": KEY, "WECOM_API_BASE": wecom.base_url,
            "AI_BASE_URL": model.base_url, "AI_MODEL": "fake-model", "AI_API_KEY": API_KEY,
            "CONSENSUS_MODELS": "fake-model*2", "AI_TIMEOUT_SECONDS": "5",
            "EXECUTOR": "kubectl", "KUBECTL": str(kubectl.path),
        }.items():
            monkeypatch.setenv(f"ALERTPILOT_{name}", value)
        yield Peers(bot_api, wecom, model, kubectl)


async def doctor(*args: str) -> int:
    """Run the console entry point off the event loop (it runs its own), so the fakes keep answering."""
    try:
        await asyncio.to_thread(main, ["doctor", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("main() returned instead of exiting")


def table(out: str) -> dict[str, tuple[str, str, str]]:
    """name -> (status, detail, fix) from the printed table."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CHECK"))
    status_at, detail_at = lines[header].index("STATUS"), lines[header].index("DETAIL")
    rows: dict[str, tuple[str, str, str]] = {}
    name = ""
    for line in lines[header + 1:]:
        if not line.strip():
            break
        if line[:status_at].strip():
            name = line[:status_at].strip()
            rows[name] = (line[status_at:detail_at].strip(), line[detail_at:].strip(), "")
        elif line.strip().startswith("→ fix: "):
            status, detail, _ = rows[name]
            rows[name] = (status, detail, line.strip().removeprefix("→ fix: "))
    return rows


async def test_doctor_all_healthy(peers: Peers, capsys: pytest.CaptureFixture[str]) -> None:
    assert await doctor() == 0
    out = capsys.readouterr().out
    rows = table(out)
    assert {status for status, _, _ in rows.values()} <= {"ok", "skipped"}, out
    for name in ("configuration", "time zone", "database", "telegram token", "telegram chat", "telegram webhook",
                 "wecom robot 0a1b…01", "ai model", "consensus fake-model ×2", "kubectl"):
        assert rows[name][0] == "ok", out
    assert rows["wecom robot 0a1b…01"][1] == "key well-formed; not sent (use --send to post a test message)"
    assert peers.wecom.sends == []  # nothing is posted without --send
    assert "client v1.30.2, cluster v1.29.4" in rows["kubectl"][1]
    assert out.rstrip().endswith("nothing failed")
    for secret in (BOT_TOKEN, KEY, API_KEY):
        assert secret not in out


async def test_doctor_send_posts_one_test_message_per_robot(peers: Peers, capsys: pytest.CaptureFixture[str]) -> None:
    assert await doctor("--send") == 0
    rows = table(capsys.readouterr().out)
    assert rows["wecom robot 0a1b…01"] == ("ok", "test message delivered (errcode 0)", "")
    assert len(peers.wecom.delivered(KEY)) == 1 and "alertpilot doctor" in peers.wecom.delivered(KEY)[0].content


@pytest.mark.parametrize(("fault", "row", "detail", "fix"), [
    ("telegram", "telegram token", "the token is wrong: Unauthorized (getMe answered 401)", TOKEN_FIX),
    ("ai", "ai model", "fake-model at http://127.0.0.1:", "start the model server, or fix ALERTPILOT_AI_BASE_URL"),
    ("kubectl", "kubectl", "ALERTPILOT_KUBECTL: '/nonexistent' is not an executable on PATH", "install kubectl"),
])
async def test_doctor_names_each_fault_with_its_fix(
    peers: Peers, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    fault: str, row: str, detail: str, fix: str,
) -> None:
    if fault == "telegram":
        monkeypatch.setenv("ALERTPILOT_TELEGRAM_TOKEN", "123456:WRONG-token")  # the fake answers 401
    elif fault == "ai":
        monkeypatch.setenv("ALERTPILOT_AI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # a closed port
    else:
        monkeypatch.setenv("ALERTPILOT_KUBECTL", "/nonexistent")
    assert await doctor() == 1
    out = capsys.readouterr().out
    rows = table(out)
    status, shown, shown_fix = rows[row]
    assert status == "FAIL" and shown.startswith(detail) and shown_fix.startswith(fix), out
    failed = {name for name, (s, _, _) in rows.items() if s == "FAIL"}
    # the consensus panel shares the AI server, so it is down with it; nothing else fails
    assert failed == ({row, "consensus fake-model ×2"} if fault == "ai" else {row}), out
    assert out.rstrip().endswith("problems to fix above")
    assert "WRONG-token" not in out and BOT_TOKEN not in out


def test_doctor_with_a_configuration_that_does_not_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALERTPILOT_TIMEZONE", "Mars/Olympus_Mons")
    with pytest.raises(SystemExit) as exited:
        main(["doctor"])
    assert exited.value.code == 1
    rows = table(capsys.readouterr().out)
    status, detail, fix = rows["configuration"]
    assert status == "FAIL" and detail.startswith("ALERTPILOT_TIMEZONE: unknown time zone 'Mars/Olympus_Mons'")
    assert fix.startswith("fix the variables named here")
