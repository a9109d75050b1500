"""Start the real alertpilot against fake peers over loopback: in-process (fast, inspectable) or as a
separate process (for kill -9 and restart tests)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.app import FULL_DEPS, build_app
from bot.deps import Deps
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# PostgreSQL-backed tests run when ALERTPILOT_DATABASE_URL names a PostgreSQL server (captured here, before
# the autouse fixture hides ALERTPILOT_* variables from the app under test); each test gets its own database.
POSTGRES_URL = os.environ.get("ALERTPILOT_DATABASE_URL", "") if os.environ.get(
    "ALERTPILOT_DATABASE_URL", ""
).startswith("postgresql+asyncpg://") else ""
FIXTURES = ROOT.parent / "shared" / "fixtures"
STOP_TIMEOUT = 30.0
TOKEN = "test-ingest-token"
BOT_TOKEN = "123456:TEST-token"
CHAT_ID = -1001234567890
APPROVER, OPERATOR, VIEWER, STRANGER, APPROVER2 = 111, 222, 333, 999, 444
ROLES = f"tg:{APPROVER}=approver,tg:{OPERATOR}=operator,tg:{VIEWER}=viewer,tg:{APPROVER2}=approver"


async def scratch_postgres_database() -> tuple[str, Any]:
    """A fresh database on the server of ALERTPILOT_DATABASE_URL: (url, async drop function); skips without one."""
    if not POSTGRES_URL:
        pytest.skip("set ALERTPILOT_DATABASE_URL=postgresql+asyncpg://… to run the PostgreSQL variant")
    base = make_url(POSTGRES_URL)
    name = f"alertpilot_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))

    async def drop() -> None:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "alertmanager" / name).read_text())


def alertmanager_payload(alertname: str, alerts: dict[str, str]) -> dict[str, Any]:
    """An Alertmanager webhook for the group ``alertname`` (one incident): ``alerts`` maps each alert's instance to
    "firing" or "resolved"; its fingerprint is ``<alertname>-<instance>``."""
    return {
        "receiver": "webhook",
        "status": "firing" if "firing" in alerts.values() else "resolved",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": alertname, "instance": instance, "service": "db", "severity": "critical"},
                "annotations": {"summary": f"{alertname} on {instance}"},
                "startsAt": "2026-11-24T05:06:48Z",
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-24T05:16:48Z",
                "fingerprint": f"{alertname}-{instance}",
            }
            for instance, status in alerts.items()
        ],
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_settings(tmp_path: Path, *, bot_api: str | None = None, chat: bool = True, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/alertpilot.db",
        "http_host": "127.0.0.1",
        "http_port": 0,
        "ingest_token": TOKEN,
        "roles": ROLES,
        "timezone": "Asia/Taipei",
        "telegram_polling_timeout": 1,
        # tests do not wait out Telegram's real pacing; the pacing itself has its own tests
        "chat_rate_per_second": 200.0,
        "group_rate_per_minute": 100000.0,
        "bot_rate_per_second": 1000.0,
        "outbox_max_backoff_seconds": 2.0,
        "shutdown_grace_seconds": 5.0,  # a test that stops mid-analysis does not wait the production 20 s
    }
    if bot_api is not None:
        values.update(telegram_token=BOT_TOKEN, telegram_api_base=bot_api, telegram_chat_id=CHAT_ID if chat else None)
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class AppUnderTest:
    runner: web.AppRunner
    base_url: str
    deps: Deps
    http: httpx.AsyncClient
    app: web.Application

    async def post_alerts(self, payload: Any, *, token: str = TOKEN) -> httpx.Response:
        return await self.http.post(
            "/webhooks/alertmanager", json=payload, headers={"Authorization": f"Bearer {token}"}
        )

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers={"Authorization": f"Bearer {TOKEN}"})

    async def stop(self) -> None:
        await self.http.aclose()
        cleanup = asyncio.ensure_future(self.runner.cleanup())
        done, _ = await asyncio.wait({cleanup}, timeout=STOP_TIMEOUT)
        if not done:  # a shutdown that hangs is a bug: show where every task is stuck
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(limit=12, file=stacks)
            cleanup.cancel()
            raise AssertionError(f"the app did not stop within {STOP_TIMEOUT}s; tasks:\n{stacks.getvalue()}")
        cleanup.result()


async def start_app(settings: Settings, **build_kwargs: Any) -> AppUnderTest:
    """The app without its scheduler unless ``scheduler=True``: tests run the jobs (app[JOBS]) with their clock."""
    build_kwargs.setdefault("scheduler", False)
    app = build_app(settings, **build_kwargs)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    return AppUnderTest(runner, base, app[FULL_DEPS], httpx.AsyncClient(base_url=base, timeout=10), app)


async def eventually(check: Any, *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check()`` (sync or async) until it returns a truthy value; fail with its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
        await asyncio.sleep(interval)


class AppProcess:
    """alertpilot as its own OS process (the console script), for kill -9 and restart tests."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.port = int(env["ALERTPILOT_HTTP_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = cwd / "app.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTPILOT_")}
        env.update(self.env)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "bot.py")], cwd=self.cwd, env=env, stdout=out, stderr=out)

        async def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"alertpilot exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                async with httpx.AsyncClient(timeout=1) as client:
                    return (await client.get(f"{self.base_url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(healthy, timeout=timeout, interval=0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def sigterm(self, timeout: float = 30.0) -> int:
        """SIGTERM, as an orchestrator stops it; its exit code once it has drained and exited."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + timeout
        while self.proc.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"alertpilot did not exit within {timeout}s of SIGTERM")
            await asyncio.sleep(0.05)
        return self.proc.returncode
