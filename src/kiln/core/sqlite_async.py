"""aiosqlite connections whose statements cost one thread hop instead of three or four.

aiosqlite runs every call on the connection's own thread, and each call is a queue put, a
thread wake-up and a loop wake-up. SQLAlchemy's adapter makes up to four calls per statement
(create the cursor, execute, fetch, close), so a busy SQLite process spent more time switching
threads than running SQL. Here the cursor is created inside the execute hop, the first rows
are fetched in the same hop, and a cursor with nothing left to fetch is closed in that hop too
(else closing is queued without waiting for it). A commit or rollback with no transaction
open (the pool's reset after a commit, a read-only connection's end) makes no hop at all.

Rows beyond the first ``PREFETCH`` are fetched on demand, so a large result is never held
whole. Used through ``create_async_engine(..., async_creator=connector(...))`` (``core.db``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable
from functools import partial
from typing import Any

import aiosqlite

PREFETCH = 256


class OneHopCursor(aiosqlite.Cursor):
    def __init__(self, conn: OneHopConnection) -> None:  # no hop: the sqlite3 cursor comes with the first call
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._cursor: sqlite3.Cursor | None = None  # type: ignore[assignment]
        self._rows: list[Any] = []
        self._more = False
        # what the DBAPI reads after execute, kept here: a fully fetched cursor is closed in its hop
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    def _sqlite_cursor(self) -> sqlite3.Cursor:  # on the connection's thread
        if self._cursor is None:
            self._cursor = self._conn._conn.cursor()
        return self._cursor

    def _keep_state(self, cursor: sqlite3.Cursor, more: bool) -> None:  # on the connection's thread
        self._description, self._rowcount, self._lastrowid = cursor.description, cursor.rowcount, cursor.lastrowid
        if not more:
            cursor.close()
            self._cursor = None

    def _drop_failed(self) -> None:  # on the connection's thread
        # A statement that failed mid-write (a foreign key gone, a constraint) and stays referenced
        # by a live cursor makes the connection's close a zombie (sqlite3_close_v2) that keeps its
        # transaction, and with it the database's write lock, until the cursor is collected.
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> OneHopCursor:
        def run() -> tuple[list[Any], bool]:
            cursor = self._sqlite_cursor()
            try:
                cursor.execute(sql, () if parameters is None else parameters)
                rows = cursor.fetchmany(PREFETCH) if cursor.description is not None else []
            except BaseException:
                self._drop_failed()
                raise
            more = len(rows) == PREFETCH
            self._keep_state(cursor, more)
            return rows, more

        self._rows, self._more = await self._conn._execute(run)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> OneHopCursor:
        def run() -> None:
            cursor = self._sqlite_cursor()
            try:
                cursor.executemany(sql, parameters)
            except BaseException:
                self._drop_failed()
                raise
            self._keep_state(cursor, False)

        await self._conn._execute(run)
        self._rows, self._more = [], False
        return self

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        if self._more:
            self._more = False
            rows += await self._conn._execute(self._sqlite_cursor().fetchall)
        return rows

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        if len(self._rows) < size and self._more:
            more = await self._conn._execute(self._sqlite_cursor().fetchmany, size)
            self._more = len(more) == size
            self._rows += more
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchone(self) -> Any:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def close(self) -> None:
        self._rows, self._more = [], False
        if self._cursor is not None:
            # Runs before this connection's next call; nothing has to wait for it.
            self._conn._tx.put_nowait((None, self._cursor.close))
            self._cursor = None

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize if self._cursor is not None else 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid


class _CursorReady:
    """What ``cursor()`` returns: awaitable and an async context manager, like aiosqlite's."""

    def __init__(self, cursor: OneHopCursor) -> None:
        self._cursor = cursor

    def __await__(self) -> Generator[Any, None, OneHopCursor]:
        return self._ready().__await__()

    async def _ready(self) -> OneHopCursor:
        return self._cursor

    async def __aenter__(self) -> OneHopCursor:
        return self._cursor

    async def __aexit__(self, *exc: object) -> None:
        await self._cursor.close()


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> _CursorReady:  # type: ignore[override]
        return _CursorReady(OneHopCursor(self))

    def _idle(self) -> bool:
        # `in_transaction` only reads SQLite's autocommit flag; statements on this connection are
        # awaited one at a time, so none runs on its thread now (a queued cursor close can, and
        # does not change it). With no transaction, commit and rollback are no-ops in sqlite3.
        conn = self._connection
        return conn is not None and not conn.in_transaction

    async def run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Call ``fn(sqlite3_connection)`` on this connection's thread: several statements (a
        transaction's last write and its COMMIT, say) for the price of one hop."""
        return await self._execute(fn, self._conn)

    async def commit(self) -> None:
        if not self._idle():
            await super().commit()

    def _roll_back_before_closing(self) -> None:
        # Queued ahead of the close (no extra hop: nothing waits for it). Should a statement still
        # be referenced somewhere, the close leaves a zombie connection; rolled back first, that
        # zombie holds no write lock (the next writer would wait out the busy timeout for it).
        connection = self._connection
        if connection is not None and self._running:
            self._tx.put_nowait((None, partial(_roll_back_open_transaction, connection)))

    async def close(self) -> None:
        self._roll_back_before_closing()
        await super().close()

    def stop(self) -> Any:  # the forced close (SQLAlchemy's terminate, a collected connection)
        self._roll_back_before_closing()
        return super().stop()

    async def rollback(self) -> None:
        if not self._idle():
            await super().rollback()


def _roll_back_open_transaction(connection: sqlite3.Connection) -> None:  # on the connection's thread
    if connection.in_transaction:
        connection.rollback()


def connector(args: list[Any], kwargs: dict[str, Any]) -> Callable[[], OneHopConnection]:
    """An ``async_creator`` for SQLAlchemy: the connection ``aiosqlite.connect`` would make."""

    def create() -> OneHopConnection:
        connection = OneHopConnection(lambda: sqlite3.connect(*args, **kwargs), iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy sets for aiosqlite: never block exit
        return connection

    return create
