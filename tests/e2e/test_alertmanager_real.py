"""Real peer: a real Prometheus Alertmanager (the Debian binary) drives the in-process app.

Alertmanager gets a webhook receiver pointing at the app (bearer token through ``http_config.authorization``),
alerts are fired and resolved with ``amtool``, and the fake Bot API shows what reached Telegram. This checks
what the fixture-based tests cannot: the payloads, auth header, grouping and retries of the real sender.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.botapi import FakeBotAPI, Request
from tests.harness import CHAT_ID, TOKEN, AppUnderTest, eventually, free_port

pytestmark = pytest.mark.realpeer

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
LABELS = ["alertname=DiskFull", "service=db", "severity=critical", "instance=db-1"]
SUMMARY = "Disk almost full <90%>"
INFO_BUTTONS = ["🔍 Details", "📜 History"]
TIMEOUT = 20.0


def _config(webhook_url: str) -> str:
    return f"""\
global:
  resolve_timeout: 5m
route:
  receiver: alertpilot
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: alertpilot
    webhook_configs:
      - url: '{webhook_url}'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: '{TOKEN}'
"""


class Alertmanager:
    """The real Alertmanager as a child process; its log goes to a file for failure messages."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(_config(webhook_url))
        self.log = workdir / "alertmanager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:] or "(empty)"
        except OSError as exc:
            return f"(no log: {exc})"

    async def start(self) -> None:
        storage = self.workdir / "data"
        storage.mkdir()
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",  # no gossip: binds nothing but the web port
                    "--log.level=info",
                ],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

        async def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(f"{self.url}/-/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            await eventually(ready, timeout=TIMEOUT, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"alertmanager not ready: {exc}\n--- alertmanager log ---\n{self.log_tail()}") from None

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
        self.proc = None

    async def amtool(self, *args: str) -> str:
        """Run ``amtool <args> --alertmanager.url=...`` in a thread (the app shares this event loop)."""
        assert AMTOOL is not None, "amtool not found on PATH (it ships with Alertmanager)"
        env = {**os.environ, "HOME": str(self.workdir)}  # no ~/.config/amtool/config.yml from the developer
        command = [AMTOOL, f"--alertmanager.url={self.url}", *args]
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise AssertionError(f"{command} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout


@pytest.fixture
async def alertmanager(app: AppUnderTest, tmp_path: Path) -> AsyncIterator[Alertmanager]:
    if ALERTMANAGER is None:
        pytest.skip("Prometheus Alertmanager not installed (neither prometheus-alertmanager nor alertmanager on PATH; `make alertmanager` installs it)")
    workdir = tmp_path / "alertmanager"
    workdir.mkdir()
    am = Alertmanager(ALERTMANAGER, workdir, f"{app.base_url}/webhooks/alertmanager")
    try:
        await am.start()
        yield am
    finally:
        await am.stop()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _buttons(markup: dict[str, Any] | None) -> list[str]:
    return [b["text"] for row in (markup or {}).get("inline_keyboard", []) for b in row]


def _card_sends(bot_api: FakeBotAPI) -> list[Request]:
    """Successful sendMessage calls in CHAT_ID that carried an inline keyboard: incident cards."""
    return [
        r
        for r in bot_api.calls("sendMessage")
        if r.status == 200
        and r.params.get("chat_id") == CHAT_ID
        and _buttons(r.params.get("reply_markup"))
        and "DiskFull" in str(r.params.get("text", ""))
    ]


async def test_real_alertmanager_fires_and_resolves_one_card(
    app: AppUnderTest, bot_api: FakeBotAPI, alertmanager: Alertmanager
) -> None:
    try:
        await _fire_and_resolve(app, bot_api, alertmanager)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- fake Bot API requests ---\n{bot_api.dump_requests()}"
            f"\n--- alertmanager log (tail) ---\n{alertmanager.log_tail()}"
        ) from None


async def _fire_and_resolve(app: AppUnderTest, bot_api: FakeBotAPI, am: Alertmanager) -> None:
    # An explicit start a little in the past keeps startsAt <= endsAt however fast the resolve comes.
    started = _rfc3339(datetime.now(UTC) - timedelta(minutes=2))
    await am.amtool("alert", "add", *LABELS, f"--annotation=summary={SUMMARY}", f"--start={started}")

    # 1. the firing alert becomes exactly one card, with the summary HTML-escaped
    await eventually(lambda: _card_sends(bot_api), timeout=TIMEOUT)
    sends = _card_sends(bot_api)
    assert len(sends) == 1, f"expected one card, got {len(sends)}"
    card_id = sends[0].response["result"]["message_id"]
    card = bot_api.messages[CHAT_ID][card_id]
    assert card["parse_mode"] == "HTML"
    assert "&lt;90%&gt;" in sends[0].params["text"], sends[0].params["text"]
    assert "<90%>" in card["plain_text"], card["plain_text"]
    assert _buttons(card["reply_markup"]), card

    # 2. amtool resolves by re-sending the same labels with an end time in the past
    ended = _rfc3339(datetime.now(UTC) - timedelta(seconds=1))
    await am.amtool(
        "alert", "add", *LABELS, f"--annotation=summary={SUMMARY}", f"--start={started}", f"--end={ended}"
    )

    replies = await bot_api.wait_for(
        "sendMessage",
        timeout=TIMEOUT,
        predicate=lambda r: r.status == 200
        and r.params.get("chat_id") == CHAT_ID
        and (r.params.get("reply_parameters") or {}).get("message_id") == card_id
        and "resolved" in str(r.params.get("text", "")).lower(),
    )
    assert len(replies) == 1, [r.params["text"] for r in replies]

    await bot_api.wait_for(
        "editMessageText",
        timeout=TIMEOUT,
        predicate=lambda r: r.status == 200
        and r.params.get("chat_id") == CHAT_ID
        and r.params.get("message_id") == card_id
        and _buttons(r.params.get("reply_markup")) == INFO_BUTTONS,
    )
    card = bot_api.messages[CHAT_ID][card_id]
    assert _buttons(card["reply_markup"]) == INFO_BUTTONS, card["reply_markup"]
    assert "Resolved" in card["plain_text"] and "<90%>" in card["plain_text"], card["plain_text"]

    # 3. the read API agrees; after a few more group intervals there is still one card and one incident
    async def resolved_incidents() -> list[dict[str, Any]]:
        response = await app.get("/api/incidents")
        assert response.status_code == 200, response.text
        body = response.json()
        return body["items"] if body["total"] == 1 and body["items"][0]["status"] == "resolved" else []

    await eventually(resolved_incidents, timeout=TIMEOUT)
    await asyncio.sleep(2.5)  # > 2 group_intervals: a re-notification would show up as a second card
    body = (await app.get("/api/incidents")).json()
    assert body["total"] == 1 and len(body["items"]) == 1, body
    assert body["items"][0]["status"] == "resolved", body
    assert len(_card_sends(bot_api)) == 1, "duplicate card"
    cards = [m for m in bot_api.sent_messages(CHAT_ID) if m["reply_markup"]]
    assert [m["message_id"] for m in cards] == [card_id], cards
