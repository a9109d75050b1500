"""Faults (issue 8): the database locked or busy (SQLite) or restarted (PostgreSQL). An alert post is either
stored and answered 200, or answered 503 with Retry-After and a JSON error so that Alertmanager sends it again;
never a 500 and never a lost acknowledgement. Afterwards the workers carry on: a new alert still gets its card."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from handlers.http.middleware import error_middleware
from storage.errors import DatabaseUnavailable, WriteConflict
from tests.fakes.botapi import FakeBotAPI
from tests.harness import (
    CHAT_ID,
    POSTGRES_URL,
    AppUnderTest,
    alertmanager_payload,
    app_settings,
    eventually,
    scratch_postgres_database,
    start_app,
)

RETRY_AFTER = "5"


def alert(n: int) -> dict[str, Any]:
    return alertmanager_payload(f"Fault{n}", {"db-1": "firing"})


def assert_retry_later(response: httpx.Response) -> None:
    """The answer to a request the database could not take now: 503, Retry-After, a JSON error."""
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == RETRY_AFTER
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body.get("error") or body.get("status") == "unhealthy", body


async def stored_fingerprints(app: AppUnderTest) -> set[str]:
    response = await app.get("/api/alerts", limit=200)
    assert response.status_code == 200, response.text
    return {a["fingerprint"] for a in response.json()["items"]}


def card_of(bot_api: FakeBotAPI, alertname: str) -> list[dict[str, Any]]:
    return [m for m in bot_api.sent_messages(CHAT_ID) if m.get("reply_markup") and alertname in m["text"]]


async def post_until_stored(app: AppUnderTest, payloads: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
    """Post each payload, as Alertmanager does, until it is acknowledged; the statuses each one got."""
    statuses: dict[str, list[int]] = {}
    for fingerprint, payload in payloads.items():
        while True:
            response = await app.post_alerts(payload)
            statuses.setdefault(fingerprint, []).append(response.status_code)
            if response.status_code == 200:
                break
            assert_retry_later(response)
            await asyncio.sleep(0.2)
    return statuses


# --- SQLite: another connection holds the write lock ------------------------------------------------------


class WriteLock:
    """A second SQLite connection (another process, a backup tool, `sqlite3` in a shell) holding the
    database's write lock: BEGIN EXCLUSIVE until released."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)

    async def take(self) -> None:
        await asyncio.to_thread(self._conn.execute, "BEGIN EXCLUSIVE")

    async def release(self) -> None:
        await asyncio.to_thread(self._conn.execute, "COMMIT")
        self._conn.close()


async def started(settings: Any, bot_api: FakeBotAPI) -> AppUnderTest:
    app = await start_app(settings)
    await bot_api.wait_for("getUpdates")
    return app


async def test_sqlite_write_lock_shorter_than_busy_timeout_delays_posts_but_all_succeed(
    tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    app = await started(app_settings(tmp_path, bot_api=bot_api.base_url), bot_api)
    try:
        assert (await app.post_alerts(alert(0))).status_code == 200
        lock = WriteLock(tmp_path / "alertpilot.db")
        await lock.take()
        loop = asyncio.get_running_loop()
        began = loop.time()
        posts = asyncio.gather(*(app.post_alerts(alert(n)) for n in (1, 2, 3)))
        await asyncio.sleep(1.5)
        assert (await app.http.get("/healthz")).status_code == 200  # WAL: reads go on under a write lock
        await lock.release()
        responses = await posts
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
        assert loop.time() - began >= 1.4  # they waited for the lock (SQLite's busy timeout), then went in
        assert await stored_fingerprints(app) == {f"Fault{n}-db-1" for n in range(4)}
        await eventually(lambda: card_of(bot_api, "Fault3"))
    finally:
        await app.stop()


async def test_sqlite_write_lock_longer_than_busy_timeout_answers_503_retry_after_and_loses_nothing(
    tmp_path: Path, bot_api: FakeBotAPI
) -> None:
    database = tmp_path / "alertpilot.db"
    settings = app_settings(tmp_path, bot_api=bot_api.base_url, database_url=f"sqlite+aiosqlite:///{database}?timeout=0.3")
    app = await started(settings, bot_api)
    try:
        assert (await app.post_alerts(alert(0))).status_code == 200
        await eventually(lambda: card_of(bot_api, "Fault0"))
        lock = WriteLock(database)
        await lock.take()
        acknowledged, refused = {"Fault0-db-1"}, []
        for n in range(1, 5):
            response = await app.post_alerts(alert(n))
            assert response.status_code in (200, 503), response.text  # never a 500
            if response.status_code == 200:
                acknowledged.add(f"Fault{n}-db-1")
            else:
                assert_retry_later(response)
                refused.append(n)
        assert refused, "the lock outlasted the busy timeout: some posts must have been refused"
        health = await app.http.get("/healthz")
        assert health.status_code == 200, health.text  # reads still work: the process and its database are up
        assert acknowledged <= await stored_fingerprints(app)  # what was acknowledged is stored, even now
        await lock.release()

        await post_until_stored(app, {f"Fault{n}-db-1": alert(n) for n in refused})  # Alertmanager's retries
        assert await stored_fingerprints(app) == {f"Fault{n}-db-1" for n in range(5)}
        # the workers lived through it: the alerts that went in late get their analysis and cards
        for n in range(1, 5):
            await eventually(lambda n=n: card_of(bot_api, f"Fault{n}"), timeout=15)
        assert (await app.post_alerts(alert(5))).status_code == 200
        await eventually(lambda: card_of(bot_api, "Fault5"), timeout=15)
    finally:
        await app.stop()


# --- PostgreSQL: the server drops every connection, or refuses new ones while it restarts ----------------


@pytest.fixture
async def pg_database() -> AsyncIterator[tuple[str, str]]:
    """A scratch PostgreSQL database: (its SQLAlchemy URL, its name); skipped without ALERTPILOT_DATABASE_URL."""
    url, drop = await scratch_postgres_database()
    name = make_url(url).database or ""
    try:
        yield url, name
    finally:
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await drop()


async def admin(sql: str) -> Any:
    """One statement on the server's maintenance database, from a connection of its own (not the app's)."""
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def kill_connections(name: str) -> int:
    rows = await admin(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    return len(rows)


async def test_postgres_connections_killed_next_requests_work_and_workers_carry_on(
    tmp_path: Path, bot_api: FakeBotAPI, pg_database: tuple[str, str]
) -> None:
    url, name = pg_database
    app = await started(app_settings(tmp_path, bot_api=bot_api.base_url, database_url=url, auto_migrate=True), bot_api)
    try:
        acknowledged = await post_until_stored(app, {f"Fault{n}-db-1": alert(n) for n in (0, 1)})
        assert all(statuses == [200] for statuses in acknowledged.values())
        await eventually(lambda: card_of(bot_api, "Fault1"), timeout=15)

        assert await kill_connections(name) >= 1  # as a server restart does to every open connection
        statuses = await post_until_stored(app, {f"Fault{n}-db-1": alert(n) for n in (2, 3)})
        assert all(set(s) <= {200, 503} for s in statuses.values()), statuses  # a 503 carries Retry-After
        assert (await app.http.get("/healthz")).status_code == 200
        assert await stored_fingerprints(app) == {f"Fault{n}-db-1" for n in range(4)}
        for n in (2, 3):  # the analysis and outbox workers survived the dropped connections
            await eventually(lambda n=n: card_of(bot_api, f"Fault{n}"), timeout=15)

        await kill_connections(name)  # once more, with nothing posted meanwhile: only the workers notice
        await asyncio.sleep(1.5)
        assert (await app.post_alerts(alert(4))).status_code in (200, 503)
        await post_until_stored(app, {"Fault4-db-1": alert(4)})
        await eventually(lambda: card_of(bot_api, "Fault4"), timeout=15)
    finally:
        await app.stop()


class TcpProxy:
    """The PostgreSQL server as the app sees it, through a loopback proxy that can go away: ``down()`` drops
    every connection and refuses new ones (the server is restarting), ``up()`` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._links):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _link(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self._target)
        except OSError:
            client_w.transport.abort()
            return
        self._links |= {client_w, server_w}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.transport.abort()
                self._links.discard(writer)

        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


async def test_postgres_restart_answers_503_retry_after_while_down_then_recovers(
    tmp_path: Path, bot_api: FakeBotAPI, pg_database: tuple[str, str]
) -> None:
    url, _ = pg_database
    real = make_url(url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.up()
    proxied = real.set(port=proxy.port).render_as_string(hide_password=False)
    app = await started(app_settings(tmp_path, bot_api=bot_api.base_url, database_url=proxied, auto_migrate=True), bot_api)
    try:
        assert (await app.post_alerts(alert(0))).status_code == 200
        await eventually(lambda: card_of(bot_api, "Fault0"), timeout=15)

        await proxy.down()  # connections dropped, new ones refused: the server is restarting
        for n in (1, 2):
            assert_retry_later(await app.post_alerts(alert(n)))
        assert_retry_later(await app.http.get("/healthz"))
        await asyncio.sleep(1.5)  # the workers meet the refusals too

        await proxy.up()
        await assert_recovered(app, bot_api)
    finally:
        await app.stop()
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.down()


async def assert_recovered(app: AppUnderTest, bot_api: FakeBotAPI) -> None:
    """The database is back: the refused alerts go in when the sender retries, nothing acknowledged is
    missing, and the workers deliver the cards."""
    statuses = await post_until_stored(app, {f"Fault{n}-db-1": alert(n) for n in (1, 2)})
    assert all(s[-1] == 200 for s in statuses.values())
    assert (await app.http.get("/healthz")).status_code == 200
    assert await stored_fingerprints(app) == {f"Fault{n}-db-1" for n in range(3)}
    for n in (1, 2):
        await eventually(lambda n=n: card_of(bot_api, f"Fault{n}"), timeout=15)


async def test_postgres_refusing_connections_answers_503_retry_after_then_recovers(
    tmp_path: Path, bot_api: FakeBotAPI, pg_database: tuple[str, str]
) -> None:
    url, name = pg_database
    app = await started(app_settings(tmp_path, bot_api=bot_api.base_url, database_url=url, auto_migrate=True), bot_api)
    try:
        assert (await app.post_alerts(alert(0))).status_code == 200
        await eventually(lambda: card_of(bot_api, "Fault0"), timeout=15)

        # the server is restarting: open connections are dropped and new ones refused for a while
        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await kill_connections(name)
        for n in (1, 2):
            assert_retry_later(await app.post_alerts(alert(n)))
        health = await app.http.get("/healthz")
        assert_retry_later(health)
        assert health.json()["status"] == "unhealthy"
        await asyncio.sleep(1.5)  # the workers meet the refusals too

        await admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await assert_recovered(app, bot_api)
    finally:
        await app.stop()


# --- the HTTP edge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [OperationalError("INSERT …", {}, Exception("database is locked")),
                                   DatabaseUnavailable("database unreachable"), WriteConflict("still conflicting")])
async def test_storage_errors_are_answered_503_with_retry_after(error: Exception) -> None:
    """Whatever storage raises that a later attempt may not (locked, unreachable, a conflict that outlived the
    service's retries) is a 503 the sender retries, with Retry-After, never a 500."""

    async def handler(request: web.Request) -> web.Response:
        raise error

    app = web.Application(middlewares=[error_middleware])
    app.router.add_post("/webhooks/alertmanager", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhooks/alertmanager", json={})
        assert response.status == 503
        assert response.headers["Retry-After"] == RETRY_AFTER
        assert (await response.json()) == {"error": "storage unavailable; retry later"}
