"""SQLite for asyncio with one thread hand-off per statement: the aiosqlite interface SQLAlchemy's aiosqlite
dialect drives, implemented on the standard ``sqlite3`` module.

aiosqlite runs every cursor operation in its connection's thread: creating the cursor, executing, fetching
the rows and closing it are four hand-offs for one statement, each a queue put, a thread wake-up and a
wake-up of the event loop (about 40 µs of CPU each here, 30 times the cost of a small indexed query).
Here a statement executes and fetches all of its rows in one hand-off; creating, reading and closing the
cursor happen in the event loop's thread, where they only touch memory. A transaction's BEGIN goes with its
first statement (``Connection.begin``); commit, rollback and close are one hand-off each, and none when no
transaction is open. SQLite itself still runs in the connection's own thread, so a long query or a lock wait never
blocks the event loop, and operations on one connection never overlap (SQLAlchemy awaits each one). The one
exception is asked for: a write transaction of small statements (``Connection.begin(..., inline=True)``,
``Database.write(small=True)``) runs its BEGIN IMMEDIATE in the event loop's thread when the write lock is free
(else in the connection's thread), and then its statements there too, where nothing can make them wait; a
hand-off costs ten times such a statement.

A result is held in memory whole, also for a streamed query (``session.stream``; alertpilot does not stream
from the database). ``dbapi()`` is what ``create_async_engine(..., module=...)`` takes for a
``sqlite+aiosqlite`` URL.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

__version__ = "1.0"  # SQLAlchemy reads the driver's version (aiosqlite's, for its own dialect)

# What SQLAlchemy reads from the driver module (aiosqlite re-exports sqlite3's)
DatabaseError = sqlite3.DatabaseError
Error = sqlite3.Error
IntegrityError = sqlite3.IntegrityError
NotSupportedError = sqlite3.NotSupportedError
OperationalError = sqlite3.OperationalError
ProgrammingError = sqlite3.ProgrammingError
sqlite_version = sqlite3.sqlite_version
sqlite_version_info = sqlite3.sqlite_version_info

T = TypeVar("T")


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    return AsyncAdapt_aiosqlite_dbapi(sys.modules[__name__], sqlite3)


def connect(database: str, **kwargs: Any) -> Connection:
    return Connection(database, kwargs)


class _Thread:
    """SQLAlchemy marks the driver's thread a daemon; the executor's worker is already one in effect."""

    daemon = True


class _Jobs:
    """aiosqlite's job queue, as SQLAlchemy's dialect uses it (``put_nowait((future, function))``)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def put_nowait(self, job: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = job
        task = asyncio.ensure_future(self._connection._run(function))
        task.add_done_callback(lambda done: _copy(done, future))


def _copy(done: asyncio.Future[Any], future: asyncio.Future[Any]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (exc := done.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(done.result())


class Connection:
    def __init__(self, database: str, kwargs: dict[str, Any]) -> None:
        self._database, self._kwargs = database, kwargs
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._thread = _Thread()
        self._tx = _Jobs(self)
        self._begin: str | None = None  # a BEGIN to run with the next statement (``begin``)
        self._inline_next = False  # the transaction ``begin`` opens runs its statements inline (see there)
        self._inline = False  # the open transaction's statements run in the event loop's thread

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> Connection:
        kwargs = {**self._kwargs, "check_same_thread": False}  # used from the loop's thread and its own
        self._conn = await self._run(lambda: sqlite3.connect(self._database, **kwargs))
        return self

    async def _run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._raw.isolation_level

    @property
    def _raw(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    def cursor(self) -> _CursorContext:
        return _CursorContext(self)

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        cursor = Cursor(self)
        await cursor.execute(sql, parameters)
        return cursor

    def begin(self, statement: str, *, inline: bool = False) -> None:
        """Begin a transaction (``BEGIN``, ``BEGIN IMMEDIATE``) with the next statement, in its hand-off; a
        transaction without statements never begins.

        ``inline`` (with ``BEGIN IMMEDIATE`` only): the transaction's statements run in the event loop's thread,
        with no hand-off, once the BEGIN holds the write lock. Nothing can make them wait then (WAL readers never
        block the writer, and no other writer can start), so this is for transactions of small, indexed
        statements (the ingest's group commit). The BEGIN is tried there too, with a busy timeout of zero; when
        another process's writer holds the lock it waits in the connection's thread instead. The COMMIT, which
        waits for the disk, always goes to the connection's thread."""
        self._begin, self._inline_next = statement, inline and statement.upper().endswith("IMMEDIATE")

    def _take_begin(self) -> str | None:
        begin, self._begin = self._begin, None
        return begin

    async def _statement(self, begin: str | None, work: Callable[[], T]) -> T:
        """Run one statement (``work``), after the transaction's BEGIN when it is the first: in the event loop's
        thread inside an inline transaction, else in the connection's thread (one hand-off for both)."""
        if begin is None:
            return work() if self._inline and self._raw.in_transaction else await self._run(work)
        if self._inline_next and self._begin_now(begin):
            self._inline = True
            return work()

        def begun() -> T:
            self._raw.execute(begin)
            return work()

        result = await self._run(begun)
        self._inline = self._inline_next
        return result

    def _begin_now(self, begin: str) -> bool:
        """Take the write lock here if it is free right now; False when another connection holds it (the BEGIN
        then waits for it, up to the busy timeout, in the connection's thread: never in the event loop's)."""
        raw = self._raw
        (busy_ms,) = raw.execute("PRAGMA busy_timeout").fetchone()
        raw.execute("PRAGMA busy_timeout=0")
        try:
            raw.execute(begin)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            return False
        finally:
            raw.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        return True

    async def commit(self) -> None:
        self._begin, self._inline = None, False
        if self._raw.in_transaction:  # nothing open (no statement ran, or the pool's reset): nothing to hand off
            await self._run(self._raw.commit)

    async def rollback(self) -> None:
        self._begin, self._inline = None, False
        if self._raw.in_transaction:
            await self._run(self._raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        raw = self._raw
        await self._run(lambda: raw.create_function(*args, **kwargs))

    async def close(self) -> None:
        if self._conn is None:
            return
        raw, self._conn = self._conn, None
        try:
            await self._run(raw.close)
        finally:
            self._executor.shutdown(wait=False)

    def stop(self) -> None:
        """Close without waiting (the connection is being thrown away)."""
        raw, self._conn = self._conn, None
        if raw is not None:
            self._executor.submit(raw.close)
        self._executor.shutdown(wait=False)


class _CursorContext:
    """``connection.cursor()``: awaitable and an async context manager, as in aiosqlite."""

    def __init__(self, connection: Connection) -> None:
        self._cursor = Cursor(connection)

    def __await__(self) -> Any:
        return self.__aenter__().__await__()

    async def __aenter__(self) -> Cursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class Cursor:
    """A statement's results, fetched in full in the connection's thread, then read from memory."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._raw: sqlite3.Cursor | None = None
        self._rows: list[Any] = []
        self._next = 0
        self.arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        raw_connection, begin = self._connection._raw, self._connection._take_begin()

        def run() -> tuple[sqlite3.Cursor, list[Any]]:
            raw = raw_connection.cursor()
            raw.execute(sql, () if parameters is None else parameters)
            return raw, raw.fetchall() if raw.description else []

        self._raw, self._rows = await self._connection._statement(begin, run)
        self._next = 0
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        raw_connection, begin = self._connection._raw, self._connection._take_begin()
        rows = list(seq_of_parameters)

        def run() -> sqlite3.Cursor:
            raw = raw_connection.cursor()
            raw.executemany(sql, rows)
            return raw

        self._raw, self._rows, self._next = await self._connection._statement(begin, run), [], 0
        return self

    @property
    def description(self) -> Any:
        return None if self._raw is None else self._raw.description

    @property
    def rowcount(self) -> int:
        return -1 if self._raw is None else self._raw.rowcount

    @property
    def lastrowid(self) -> int | None:
        return None if self._raw is None else self._raw.lastrowid

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        size = self.arraysize if size is None else size
        chunk = self._rows[self._next : self._next + size]
        self._next += len(chunk)
        return chunk

    async def fetchall(self) -> Sequence[Any]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return rest

    async def close(self) -> None:
        """The sqlite3 cursor holds no statement any more (its rows were all fetched): nothing to hand off."""
        self._rows, self._next = [], 0

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> Any:
        row = await self.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row
