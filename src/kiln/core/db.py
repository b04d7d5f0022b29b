"""Database engine, sessions and the portable column types every table uses.

The same code runs on SQLite (embedded default) and PostgreSQL; anything that differs
between the two lives here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, String, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only

from kiln.core import sqlite_async

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_or_none(value: datetime | None) -> str | None:
    """An optional timestamp as ISO-8601 (None stays None), as the surfaces' JSON views write it."""
    return value.isoformat() if value is not None else None


def new_id() -> str:
    return str(uuid.uuid4())


def new_ids(count: int) -> list[str]:
    """`count` ids as `new_id` makes them, from one read of the OS's random source: a bulk
    insert of thousands of rows made one `os.urandom` call per row (each a system call that
    drops the GIL, so under load a wait for it)."""
    random = os.urandom(16 * count)
    return [str(uuid.UUID(bytes=random[i : i + 16], version=4)) for i in range(0, 16 * count, 16)]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite keeps no offset, so values are normalised to UTC on the way in and marked
    UTC on the way out; naive datetimes handed in are taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
"""JSON everywhere, JSONB on PostgreSQL."""


def UUIDStr() -> String:  # noqa: N802 - reads like a column type
    """UUIDs stored as their 36-character text form on every backend."""
    return String(36)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
WRITE_GATE_TIMEOUT = 30.0
WRITE_GATE_WARN_SECONDS = 10.0  # a writer waiting this long logs who holds the gate
SQLITE_POOL_SIZE = 20


class SqliteWriteGate:
    """One writer at a time, queued in-process, for an SQLite engine.

    SQLite admits one writer; a connection that finds the lock taken sleeps in SQLite's busy
    handler (1, 2, 5, 10 ... ms) instead of being woken when it frees, which under concurrent
    writers costs more than the writes. Here a connection takes an asyncio lock before its first
    write statement and gives it back when its transaction ends, so writers wait in FIFO order
    and wake at once. Reads never wait (WAL).
    """

    KEY = "kiln_write_gate"

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        # The open write transaction: its task, first write statement and since when. A writer
        # that waits long logs it, with where that task is now, so a gate held too long (a
        # transaction left open across a slow await) names its holder.
        self.holder: tuple[asyncio.Task[Any] | None, str, float] | None = None

    def install(self, engine: AsyncEngine) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._before_execute)
        event.listen(engine.sync_engine, "commit", self._release_connection)
        event.listen(engine.sync_engine, "rollback", self._release_connection)
        event.listen(engine.sync_engine.pool, "checkin", self._release_record)
        # A statement interrupted by a BaseException (a cancelled task) invalidates its
        # connection; after that its commit/rollback can no longer reach the record's info.
        event.listen(engine.sync_engine.pool, "invalidate", self._release_invalidated)

    def _before_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if conn.info.get(self.KEY) or not statement.lstrip()[:7].upper().startswith(_WRITE_VERBS):
            return
        try:
            await_only(self.acquire())
        except TimeoutError:
            raise OperationalError(statement, None, Exception("database is locked (write gate)")) from None
        conn.info[self.KEY] = True
        self.holder = (asyncio.current_task(), statement, time.monotonic())

    async def acquire(self) -> None:
        # Only a writer that finds the gate shut arms the warning: the free gate costs nothing more.
        warning = None
        if self.lock.locked():
            warning = asyncio.get_running_loop().call_later(WRITE_GATE_WARN_SECONDS, self._log_holder, "still waiting")
        try:
            # Not asyncio.wait_for: on Python 3.11, a waiter cancelled just as the lock is handed
            # to it loses the acquisition and the gate stays shut for good. Lock.acquire,
            # cancelled directly, passes the lock on.
            async with asyncio.timeout(WRITE_GATE_TIMEOUT):
                await self.lock.acquire()
        except TimeoutError:
            self._log_holder("gave up")
            raise
        finally:
            if warning is not None:
                warning.cancel()

    def _log_holder(self, what: str) -> None:
        if self.holder is None:
            log.warning("sqlite write gate: a writer %s; the holder is unknown", what)
            return
        task, statement, since = self.holder
        where = " <- ".join(
            f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})"
            for frame in reversed(_awaiting(task)[-6:])
        )
        log.warning(
            "sqlite write gate: a writer %s; held for %.1f s by task %s since %r, now at: %s",
            what,
            time.monotonic() - since,
            task.get_name() if task is not None else "(none)",
            " ".join(statement.split())[:200],
            where or "(task ended)",
        )

    def _release(self, info: dict[str, Any]) -> None:
        if info.pop(self.KEY, False) and self.lock.locked():
            self.holder = None
            self.lock.release()

    def _release_connection(self, conn: Any) -> None:
        if not conn.invalidated:  # an invalidated one was released by _release_invalidated
            self._release(conn.info)

    def _release_record(self, dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            self._release(record.info)

    def _release_invalidated(self, dbapi_connection: Any, record: Any, exception: Any) -> None:
        self._release_record(dbapi_connection, record)


def _awaiting(task: asyncio.Task[Any] | None) -> list[Any]:
    """The frames of a pending task's await chain, outermost first (`Task.get_stack` gives one
    frame for a suspended coroutine: where it started, not where it waits)."""
    frames: list[Any] = []
    awaited: Any = task.get_coro() if task is not None and not task.done() else None
    while awaited is not None and len(frames) < 100:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def make_engine(url: str, *, pool: bool = True) -> AsyncEngine:
    """Create the async engine for `url`; SQLite gets WAL, a busy timeout, foreign keys, the write
    gate and one-thread-hop statements (`core.sqlite_async`)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        parsed = make_url(url)
        args, params = parsed.get_dialect()().create_connect_args(parsed)
        kwargs["async_creator"] = sqlite_async.connector(args, {**params, "timeout": 30})
        in_memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
        if not in_memory:  # (a memory database keeps SQLAlchemy's single shared connection)
            # Keep connections: an aiosqlite connection is a thread plus an open and four PRAGMAs,
            # and the default pool (5 + 10 overflow closed on return) reopened them under load.
            kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE)
    else:
        # No pre-ping: it costs a round trip per checkout; stale connections are recycled instead.
        kwargs.update(pool_recycle=1800, pool_size=10, max_overflow=20)
    if not pool:
        kwargs.pop("pool_size", None)
        kwargs.pop("max_overflow", None)
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        SqliteWriteGate().install(engine)
    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
