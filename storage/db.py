"""Engine and transactions. SQLite (WAL) is the embedded default; PostgreSQL (asyncpg) is for scale-out."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from storage import migrate, sqlite_driver
from storage.errors import DatabaseUnavailable, WriteConflict
from storage.repos import Tx
from storage.turns import WriteTurns

# How long a SQLite write waits for another connection's lock before "database is locked" (answered 503 with
# Retry-After); ``?timeout=<seconds>`` on the database URL changes it.
SQLITE_BUSY_TIMEOUT = 30.0
# What a driver raises, unwrapped by SQLAlchemy, while it connects: the server is down, restarting or refusing.
# (Once connected, SQLAlchemy wraps driver errors itself, and a pooled connection the server dropped is
# replaced by pool_pre_ping before use.)
UNREACHABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Database:
    """Owns the engine. ``write()`` is one transaction (serialised per process on SQLite, whose single
    writer would otherwise answer "database is locked"); ``read()`` is a read-only session."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        busy_timeout = SQLITE_BUSY_TIMEOUT
        if self.is_sqlite:
            kwargs["module"] = sqlite_driver.dbapi()  # one thread hand-off per statement (storage/sqlite_driver.py)
            busy_timeout = float(str(parsed.query.get("timeout") or SQLITE_BUSY_TIMEOUT))
            database = parsed.database or ""
            # isolation_level None: sqlite3 opens no transaction by itself; SQLAlchemy's "begin" emits BEGIN
            # (below). sqlite3's own implicit BEGIN comes only before INSERT/UPDATE/DELETE, so a transaction
            # whose first write was a SAVEPOINT ended at its RELEASE: what followed was not atomic with it.
            if database in ("", ":memory:"):
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False, "isolation_level": None})
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(connect_args={"timeout": busy_timeout, "isolation_level": None})
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect",
                         functools.partial(_sqlite_pragmas, busy_ms=round(busy_timeout * 1000)))
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine,
            expire_on_commit=False,
        )
        self._small_write_sessions = async_sessionmaker(
            self.engine.execution_options(sqlite_begin="IMMEDIATE", sqlite_inline=True) if self.is_sqlite
            else self.engine,
            expire_on_commit=False,
        )
        self._write_turns = WriteTurns() if self.is_sqlite else None

    async def create_schema(self) -> None:
        """Bring the schema to this release's (storage/migrate.py: the Alembic migrations; a database from a
        release before migrations is adopted in place). Idempotent; replicas may call it together."""
        await migrate.upgrade(self.engine)

    @asynccontextmanager
    async def write(self, *, small: bool = False, urgent: bool = False) -> AsyncIterator[Tx]:
        """One transaction; a unique-constraint violation surfaces as WriteConflict (retry it), an unreachable
        database as DatabaseUnavailable.

        ``small``: every statement of the transaction is small and indexed (bounded by the caller: the ingest's
        group commit). On SQLite they then run in the event loop's thread once the transaction holds the write
        lock (taken there too when it is free), without a thread hand-off each (storage/sqlite_driver.py,
        ``Connection.begin``).

        ``urgent``: someone waits for this transaction (the ingest's acknowledgements); on SQLite it goes before
        the background writers that are waiting (storage/turns.py)."""
        sessions = self._small_write_sessions if small else self._write_sessions
        try:
            if self._write_turns is None:
                async with sessions() as session, session.begin():
                    yield Tx(session)
            else:
                async with self._write_turns.turn(urgent=urgent), sessions() as session, session.begin():
                    yield Tx(session)
        except IntegrityError as exc:
            raise WriteConflict(str(exc.orig)) from exc
        except UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        try:
            async with self._sessions() as session:
                yield Tx(session)
        except UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except UNREACHABLE as exc:
            raise _unavailable(exc) from exc

    async def dispose(self) -> None:
        await self.engine.dispose()


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    return DatabaseUnavailable(f"database unreachable: {type(exc).__name__}: {exc}")


def _sqlite_begin(connection: Any) -> None:
    """Every transaction is a real one: BEGIN, or BEGIN IMMEDIATE (the write lock at once, so a write after
    a read never fails on another process's commit in between) where ``sqlite_begin="IMMEDIATE"`` is set."""
    options = connection.get_execution_options()
    mode = options.get("sqlite_begin", "DEFERRED")
    # sent with the first statement; sqlite_inline: Database.write(small=True)
    connection.connection.driver_connection.begin(f"BEGIN {mode}", inline=bool(options.get("sqlite_inline")))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")  # first: the pragmas below may wait for another connection
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged alert survives a power cut, not only a crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
