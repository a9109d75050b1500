"""Schema migrations (Alembic, storage/migrations/): ``alertpilot db upgrade``, and at start-up when
ALERTPILOT_AUTO_MIGRATE is on (the default for SQLite).

A new database gets every revision in order. A database made by a release before migrations (tables, no
``alembic_version``) is adopted by the baseline revision, rows kept (see its docstring). On PostgreSQL the
upgrade holds an advisory lock inside its one transaction: replicas starting together migrate once, the
others wait and find it done. On SQLite it runs inside one BEGIN IMMEDIATE transaction, to the same effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x616C6572_74706C74  # "alertplt": pg_advisory_xact_lock's key for schema changes


class SchemaOutOfDate(RuntimeError):
    """The database is not at this release's schema and migrating at start-up is off."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the revision the database is at (None: empty, or made before migrations)
    head: str  # this release's
    legacy: bool  # tables made by a release before migrations

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.legacy:
            return "made by a release before migrations"
        return f"at revision {self.current}" if self.current else "empty"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


@cache
def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    assert revision is not None, "storage/migrations/versions has no revision"
    return revision


async def state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_state)


async def upgrade(engine: AsyncEngine, *, to: str = "head") -> tuple[SchemaState, SchemaState]:
    """Migrate to this release's schema (nothing when it is there); the state before and after. ``to``: an
    earlier revision instead (tests of the step from there)."""
    # SQLite (storage/db.py begins every transaction itself): take the write lock at BEGIN, so that processes
    # sharing the file migrate one after another, all or nothing.
    async with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        before = await conn.run_sync(_state)
        if before.current != (head() if to == "head" else to):
            await conn.run_sync(_upgrade, to)
        after = await conn.run_sync(_state)
    if before != after:
        log.info("schema_migrated", before=before.describe(), after=after.describe())
    return before, after


async def ensure(engine: AsyncEngine, *, auto_migrate: bool) -> SchemaState:
    """Start-up: migrate when allowed; otherwise refuse a database that is not at this release's schema."""
    if auto_migrate:
        return (await upgrade(engine))[1]
    found = await state(engine)
    if not found.up_to_date:
        raise SchemaOutOfDate(
            f"the database is {found.describe()}; this release needs revision {found.head}: run "
            "`alertpilot db upgrade` first (or set ALERTPILOT_AUTO_MIGRATE=true)"
        )
    return found


def revision_of(conn: Connection) -> str | None:
    """The revision the database is at (None: empty, or made before migrations). Reads only."""
    return MigrationContext.configure(conn).get_current_revision()


def _state(conn: Connection) -> SchemaState:
    current = revision_of(conn)
    return SchemaState(current, head(), legacy=current is None and inspect(conn).has_table("incident"))


def _upgrade(conn: Connection, to: str) -> None:
    cfg = config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, to)
