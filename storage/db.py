"""Engine and transactions. SQLite (WAL) is the embedded default; PostgreSQL (asyncpg) is for scale-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from storage import migrate
from storage.errors import WriteConflict
from storage.repos import Tx


class Database:
    """Owns the engine. ``write()`` is one transaction (serialised per process on SQLite, whose single
    writer would otherwise answer "database is locked"); ``read()`` is a read-only session."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = parsed.database or ""
            if database in ("", ":memory:"):
                kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                kwargs.update(connect_args={"timeout": 30})
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    async def create_schema(self) -> None:
        """Bring the schema to this release's (storage/migrate.py: the Alembic migrations; a database from a
        release before migrations is adopted in place). Idempotent; replicas may call it together."""
        await migrate.upgrade(self.engine)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """One transaction; a unique-constraint violation surfaces as WriteConflict (retry it)."""
        try:
            if self._write_lock is None:
                async with self._sessions() as session, session.begin():
                    yield Tx(session)
            else:
                async with self._write_lock, self._sessions() as session, session.begin():
                    yield Tx(session)
        except IntegrityError as exc:
            raise WriteConflict(str(exc.orig)) from exc

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._sessions() as session:
            yield Tx(session)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first: the pragmas below may wait for another connection
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged alert survives a power cut, not only a crash
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
