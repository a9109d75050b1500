"""Engine and transactions. SQLite (WAL) is the embedded default; PostgreSQL (asyncpg) is for scale-out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateIndex
from sqlmodel import SQLModel

from storage import tables  # noqa: F401  (registers the tables on SQLModel.metadata)
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
        """Create missing tables, add columns that later releases added (nullable ones only), and the
        full-text index of the knowledge base. Idempotent; there are no destructive migrations yet."""
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
            await conn.run_sync(_add_missing_columns)
            await conn.run_sync(_add_missing_indexes)
            for statement in SQLITE_FTS if self.is_sqlite else POSTGRES_FTS:
                await conn.execute(text(statement))

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


SQLITE_FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS knowledge_fts USING fts5("
    "title, search_text, tokenize = 'unicode61 remove_diacritics 2')",
)
POSTGRES_FTS = (
    "CREATE INDEX IF NOT EXISTS ix_knowledge_fts ON knowledgeentry "
    "USING GIN (to_tsvector('simple', title || ' ' || search_text))",
)


def _add_missing_columns(conn: Connection) -> None:
    """Additive schema changes for databases made by an earlier release: ALTER TABLE ADD COLUMN for each
    nullable column the table lacks. A missing NOT NULL column is a migration this cannot do: say so."""
    inspector = inspect(conn)
    missing = [
        (table, column)
        for table in SQLModel.metadata.sorted_tables
        for present in [{c["name"] for c in inspector.get_columns(table.name)}]
        for column in table.columns
        if column.name not in present
    ]
    # Check everything before changing anything (SQLite runs DDL outside the transaction).
    impossible = [f"{table.name}.{column.name}" for table, column in missing if not column.nullable]
    if impossible:
        raise RuntimeError(
            f"this database needs a migration: NOT NULL column(s) missing: {', '.join(impossible)}"
        )
    # IF NOT EXISTS: another replica starting at the same time may have added it since the inspection.
    if_absent = "" if conn.dialect.name == "sqlite" else "IF NOT EXISTS "
    for table, column in missing:
        kind = column.type.compile(dialect=conn.dialect)
        # the same foreign keys a fresh database has (a NULL default is allowed to reference on SQLite)
        refs = "".join(f' REFERENCES "{fk.column.table.name}" ("{fk.column.name}")' for fk in column.foreign_keys)
        conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN {if_absent}"{column.name}" {kind}{refs}'))


def _add_missing_indexes(conn: Connection) -> None:
    """Indexes that later releases declared on tables an earlier release created (create_all skips tables
    that exist, indexes included). IF NOT EXISTS: another replica may be creating the same one."""
    for table in SQLModel.metadata.sorted_tables:
        for index in table.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged alert survives a power cut, not only a crash
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
