"""storage/sqlite_driver.py: SQLite with one thread hand-off per statement, under SQLAlchemy, as the app uses
it (Database on a file). The event loop never waits for SQLite: a slow query or a lock wait runs in the
connection's thread while other coroutines go on."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from storage import sqlite_driver
from storage.db import Database
from storage.errors import WriteConflict
from storage.tables import KeyValue


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/driver.db?timeout=10")
    await database.create_schema()
    yield database  # type: ignore[misc]
    await database.dispose()


@pytest.fixture
def recorded(db: Database, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """(the thread hand-offs, by function name; the SQL statements executed), as they happen."""
    hand_offs: list[str] = []
    run = sqlite_driver.Connection._run

    async def counting(self: sqlite_driver.Connection, function: object) -> object:
        hand_offs.append(getattr(function, "__name__", "?"))
        return await run(self, function)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_driver.Connection, "_run", counting)
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return hand_offs, statements


async def test_rows_rowcount_and_ids_come_back_through_sqlalchemy(db: Database) -> None:
    async with db.write() as tx:
        await tx.kv.put("a", "1")
        await tx.kv.put("b", "2")
        result = await tx.session.execute(text("UPDATE keyvalue SET value = value || '!' WHERE key IN ('a', 'b')"))
        assert result.rowcount == 2
    async with db.read() as tx:
        rows = (await tx.session.execute(select(KeyValue.key, KeyValue.value).order_by(KeyValue.key))).all()
        assert [tuple(r) for r in rows] == [("a", "1!"), ("b", "2!")]
        assert (await tx.session.execute(text("SELECT 1 WHERE 0"))).first() is None
        streamed = [r async for r in await tx.session.stream(select(KeyValue.key).order_by(KeyValue.key))]
        assert [r[0] for r in streamed] == ["a", "b"]


async def test_a_unique_violation_is_a_write_conflict_and_rolls_back(db: Database) -> None:
    async with db.write() as tx:
        await tx.kv.put("k", "first")
    with pytest.raises(WriteConflict):
        async with db.write() as tx:
            await tx.kv.put("other", "x")
            await tx.session.execute(text("INSERT INTO keyvalue (key, value) VALUES ('k', 'dup')"))
    async with db.read() as tx:
        assert await tx.kv.get("other") is None and await tx.kv.get("k") == "first"


async def test_one_hand_off_per_statement(db: Database, recorded: tuple[list[str], list[str]]) -> None:
    hand_offs, statements = recorded
    async with db.write() as tx:
        await tx.kv.put("k", "v")
        await tx.kv.get("k")
    async with db.read() as tx:
        await tx.kv.get("k")
    # execute + fetch: one hand-off each; a transaction's BEGIN goes with its first statement
    assert (hand_offs.count("begun"), hand_offs.count("run")) == (2, len(statements) - 2)
    # the write commits, the read ends with a rollback; the pool's resets find nothing open and hand nothing off
    assert (hand_offs.count("commit"), hand_offs.count("rollback")) == (1, 1)
    assert len(hand_offs) == len(statements) + 2


async def test_a_slow_query_does_not_block_the_event_loop(db: Database) -> None:
    loop_ran = threading.Event()

    def wait_for_the_loop() -> int:  # runs inside SQLite, in the connection's thread
        return int(loop_ran.wait(timeout=10))

    async def meanwhile() -> None:
        await asyncio.sleep(0.05)
        loop_ran.set()  # only possible if the loop is free while the query runs

    async with db.read() as tx:
        raw = await tx.session.connection()
        driver = (await raw.get_raw_connection()).driver_connection
        await driver.create_function("wait_for_the_loop", 0, wait_for_the_loop)
        side = asyncio.create_task(meanwhile())
        answer = (await tx.session.execute(text("SELECT wait_for_the_loop()"))).scalar_one()
        await side
    assert answer == 1


async def test_a_lock_wait_does_not_block_the_event_loop(db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(f"{tmp_path}/driver.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    released = asyncio.Event()

    async def release_later() -> None:
        await asyncio.sleep(0.1)  # the write below is waiting for the lock now (busy timeout 10 s)
        other.execute("COMMIT")
        released.set()

    side = asyncio.create_task(release_later())
    async with db.write() as tx:
        await tx.kv.put("after", "the lock")
    await side
    assert released.is_set()
    other.close()
    async with db.read() as tx:
        assert await tx.kv.get("after") == "the lock"


async def test_a_small_write_hands_off_only_its_begin_and_commit(
    db: Database, recorded: tuple[list[str], list[str]]
) -> None:
    hand_offs, statements = recorded
    async with db.write(small=True) as tx:
        await tx.kv.put("k", "v")
        await tx.kv.put("l", "w")
        assert await tx.kv.get("k") == "v"
    assert len(statements) >= 3
    # the write lock was free: BEGIN IMMEDIATE and every statement ran in the loop's thread; the COMMIT did not
    assert (hand_offs.count("begun"), hand_offs.count("run"), hand_offs.count("commit")) == (0, 0, 1)
    hand_offs.clear()
    statements.clear()
    async with db.write() as tx:  # an ordinary write after it: every statement goes to the thread again
        await tx.kv.put("m", "x")
        await tx.kv.get("m")
    assert hand_offs.count("run") + hand_offs.count("begun") == len(statements)
    async with db.read() as tx:
        assert [await tx.kv.get(k) for k in ("k", "l", "m")] == ["v", "w", "x"]


async def test_a_small_write_that_fails_rolls_back_whole(db: Database) -> None:
    with pytest.raises(WriteConflict):
        async with db.write(small=True) as tx:
            await tx.kv.put("first", "1")  # in the thread, with BEGIN IMMEDIATE
            await tx.kv.put("second", "2")  # inline
            await tx.session.execute(text("INSERT INTO keyvalue (key, value) VALUES ('first', 'again')"))  # inline: a conflict
    async with db.read() as tx:
        assert (await tx.kv.get("first"), await tx.kv.get("second")) == (None, None)


async def test_a_small_write_waits_for_another_writer_off_the_event_loop(db: Database, tmp_path: Path) -> None:
    other = sqlite3.connect(f"{tmp_path}/driver.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = asyncio.Event()

    async def release_later() -> None:
        await asyncio.sleep(0.1)  # runs only if the small write's BEGIN IMMEDIATE waits in the thread
        other.execute("COMMIT")
        released.set()

    side = asyncio.create_task(release_later())
    async with db.write(small=True) as tx:
        await tx.kv.put("after", "the lock")  # BEGIN IMMEDIATE is busy at once: it waits in the thread
        await tx.kv.put("and", "inline")
    await side
    assert released.is_set()
    other.close()
    async with db.read() as tx:
        assert (await tx.kv.get("after"), await tx.kv.get("and")) == ("the lock", "inline")
