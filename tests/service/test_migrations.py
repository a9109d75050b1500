"""Alembic migrations (issue 8) on SQLite and PostgreSQL: a new database ends up exactly as the models
declare (so a model change without a migration fails here), upgrading is idempotent and safe for replicas
starting together, start-up refuses a database behind this release unless it may migrate, and the
`alertpilot db` command does what it says."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel

from bot.app import check_database
from bot.settings import load_settings
from storage import migrate
from storage.db import Database
from storage.tables import Incident, KeyValue

REPO = Path(__file__).resolve().parents[2]


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    # the knowledge base's full-text table/index is made by the baseline and not declared as a model
    return [d for d in compare_metadata(context, SQLModel.metadata) if "knowledge_fts" not in repr(d)]


async def test_a_new_database_is_exactly_what_the_models_declare(url: str) -> None:
    db = Database(url)
    try:
        before, after = await migrate.upgrade(db.engine)
        assert before.current is None and not before.legacy and after.current == migrate.head() == "0003"
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
        again = await migrate.upgrade(db.engine)  # nothing to do the second time
        assert again[0].up_to_date and again[1].up_to_date
    finally:
        await db.dispose()


async def test_replicas_starting_together_migrate_once(url: str) -> None:
    dbs = [Database(url) for _ in range(3)]
    try:
        for db in dbs:  # each process has its connection (on SQLite: the file exists, in WAL mode)
            await db.ping()
        results = await asyncio.gather(*(migrate.upgrade(db.engine) for db in dbs))
        assert all(after.up_to_date for _, after in results)
        async with dbs[0].engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        assert versions == [migrate.head()]
    finally:
        for db in dbs:
            await db.dispose()


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(url: str) -> None:
    db = Database(url)
    now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    try:
        async with db.engine.begin() as conn:  # what releases before migrations made at start-up
            await conn.run_sync(SQLModel.metadata.create_all)
        async with db.write() as tx:
            tx.session.add(Incident(alertname="DiskFull", title="DiskFull", created_at=now, updated_at=now))
            tx.session.add(KeyValue(key="lang:telegram:-100", value="zh-TW"))
        found = await migrate.state(db.engine)
        assert found.legacy and not found.up_to_date and "before migrations" in found.describe()
        await db.create_schema()
        assert (await migrate.state(db.engine)).up_to_date
        async with db.read() as tx:
            assert await tx.kv.get("lang:telegram:-100") == "zh-TW"
            assert (await tx.session.execute(text("SELECT alertname FROM incident"))).scalars().all() == ["DiskFull"]
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.dispose()


async def test_a_database_at_the_first_revision_gains_the_telegram_inbox_with_its_rows(url: str) -> None:
    db = Database(url)
    now = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    try:
        await migrate.upgrade(db.engine, to="0001")
        async with db.engine.begin() as conn:
            assert not await conn.run_sync(lambda c: inspect(c).has_table("telegramupdate"))
        async with db.write() as tx:
            tx.session.add(Incident(alertname="DiskFull", title="DiskFull", created_at=now, updated_at=now))
        found = await migrate.state(db.engine)
        assert found.current == "0001" and not found.up_to_date
        before, after = await migrate.upgrade(db.engine)
        assert before.current == "0001" and after.current == "0003"
        async with db.write() as tx:
            assert await tx.telegram_updates.add(7, {"update_id": 7}, "me", now)
            assert not await tx.telegram_updates.add(7, {"update_id": 7}, "other", now)
        async with db.read() as tx:
            assert (await tx.session.execute(text("SELECT alertname FROM incident"))).scalars().all() == ["DiskFull"]
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.dispose()


async def test_start_up_refuses_a_database_behind_unless_it_may_migrate(url: str) -> None:
    db = Database(url)
    try:
        with pytest.raises(migrate.SchemaOutOfDate, match="run `alertpilot db upgrade` first"):
            await migrate.ensure(db.engine, auto_migrate=False)
        assert (await migrate.ensure(db.engine, auto_migrate=True)).up_to_date
        assert (await migrate.ensure(db.engine, auto_migrate=False)).up_to_date
    finally:
        await db.dispose()


async def test_serve_checks_the_schema_first_and_names_the_command(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/serve.db"
    refused = await check_database(load_settings(database_url=url, auto_migrate=False))
    assert refused is not None and "the database is empty; this release needs revision" in refused
    assert "alertpilot db upgrade" in refused
    assert await check_database(load_settings(database_url=url)) is None  # SQLite: migrates at start by default
    assert load_settings(database_url="postgresql+asyncpg://u@127.0.0.1/db").migrate_at_start is False
    assert load_settings(database_url="postgresql+asyncpg://u@127.0.0.1/db", auto_migrate=True).migrate_at_start


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALERTPILOT_DATABASE_URL": url, "ALERTPILOT_LOG_LEVEL": "error"}
    return subprocess.run([sys.executable, "bot.py", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_db_command_shows_and_upgrades_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    status = _cli(url, "db", "status")
    assert status.returncode == 1 and "empty; this release: revision 0003 — run `alertpilot db upgrade`" in status.stdout
    upgraded = _cli(url, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded from empty to revision 0003" in upgraded.stdout
    assert "already at revision 0003" in _cli(url, "db", "upgrade").stdout
    assert _cli(url, "db", "status").returncode == 0
    wrong = _cli(url, "db", "sideways")
    assert wrong.returncode == 2 and "invalid choice: 'sideways'" in wrong.stderr
