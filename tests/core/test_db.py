"""The SQLite engine's write gate (core/db.py): writers queue in-process, and no way a
transaction can end leaves the gate shut."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from kiln.core import sqlite_async
from kiln.core.db import SqliteWriteGate, make_engine

LONG_INSERT = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) INSERT INTO t SELECT i FROM n"
)


@pytest.fixture
async def engine(tmp_path: Path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    await engine.dispose()


async def _write_one(engine) -> None:
    async with asyncio.timeout(10):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))


async def test_writers_take_turns_and_both_commit(engine):
    await asyncio.gather(*(_write_one(engine) for _ in range(20)))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 20


async def test_a_failed_write_releases_the_gate(engine):
    with pytest.raises(Exception, match="no such table"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.execute(text("INSERT INTO missing VALUES (1)"))
    await _write_one(engine)


async def test_a_write_cancelled_mid_statement_releases_the_gate(engine):
    # A cancelled statement makes SQLAlchemy invalidate the connection (a BaseException in
    # flight); its commit/rollback then cannot read the connection's info. The gate must open
    # anyway, or every later writer waits for the gate's timeout.
    async def long_write() -> None:
        async with engine.connect() as conn:
            await conn.execute(text(LONG_INSERT))
            await conn.commit()

    task = asyncio.create_task(long_write())
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await _write_one(engine)


async def test_results_larger_than_the_prefetch_come_back_whole(engine):
    rows = sqlite_async.PREFETCH * 3 + 7
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (x) VALUES (:x)"), [{"x": i} for i in range(rows)])  # executemany
        updated = await conn.execute(text("UPDATE t SET x = x + 1 WHERE x < 10"))
        assert updated.rowcount == 10
    async with engine.connect() as conn:
        everything = (await conn.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all()
        assert len(everything) == rows and everything[-1] == rows - 1
        streamed = []
        async with conn.stream(text("SELECT x FROM t ORDER BY x")) as result:  # fetchmany pages
            async for partition in result.partitions(100):
                streamed += [row[0] for row in partition]
        assert streamed == everything
        assert (await conn.execute(text("SELECT x FROM t WHERE x = -1"))).first() is None


def _count_hops(monkeypatch) -> list:
    """The calls made on SQLite connection threads from now on."""
    hops = []
    real = sqlite_async.OneHopConnection._execute

    async def counted(self, fn, *args, **kwargs):
        hops.append(fn)
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite_async.OneHopConnection, "_execute", counted)
    return hops


async def test_a_statement_is_one_thread_hop(engine, monkeypatch):
    hops = _count_hops(monkeypatch)
    async with engine.connect() as conn:
        hops.clear()
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        assert len(hops) == 1  # aiosqlite's own cursor: create, execute, fetch, close = 4


async def test_a_transaction_costs_its_statements_and_one_commit_nothing_more(engine, monkeypatch):
    # No hop for closing a fully fetched cursor (closed in its statement's hop), for the pool's
    # rollback after a commit, or for ending a read-only connection (no transaction is open).
    async with engine.connect() as conn:  # a pooled connection, so no hop opens one below
        await conn.execute(text("SELECT 1"))
    hops = _count_hops(monkeypatch)
    still_open = []  # cursors whose close would queue work for the connection's thread
    real_close = sqlite_async.OneHopCursor.close

    async def close(self):
        still_open.append(self._cursor is not None)
        await real_close(self)

    monkeypatch.setattr(sqlite_async.OneHopCursor, "close", close)
    async with engine.begin() as conn:
        result = await conn.execute(text("INSERT INTO t VALUES (1), (2)"))
        assert result.rowcount == 2
    assert len(hops) == 2  # INSERT, COMMIT
    assert still_open and not any(still_open)
    hops.clear()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
    assert len(hops) == 1  # the SELECT; no rollback when nothing was begun
    hops.clear()
    async with engine.begin() as conn:  # rollback of a real transaction still happens
        await conn.execute(text("INSERT INTO t VALUES (3)"))
        await conn.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
async def test_an_in_memory_database_works(url):
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE m (x INTEGER)"))
            await conn.execute(text("INSERT INTO m VALUES (1)"))
        async with engine.connect() as conn:  # the same (shared) connection: the table is there
            assert (await conn.execute(text("SELECT x FROM m"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_writer_cancelled_as_the_gate_opens_for_it_does_not_keep_it():
    gate = SqliteWriteGate()
    await gate.lock.acquire()  # a writer holds the gate
    waiter = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)  # the second writer is queued
    gate.lock.release()  # handed to the queued writer ...
    waiter.cancel()  # ... which is cancelled before it runs (a shutdown, a client gone)
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert not gate.lock.locked()


async def test_a_writer_kept_waiting_logs_who_holds_the_gate(engine, monkeypatch, caplog):
    monkeypatch.setattr("kiln.core.db.WRITE_GATE_WARN_SECONDS", 0.05)
    monkeypatch.setattr("kiln.core.db.WRITE_GATE_TIMEOUT", 0.3)
    release = asyncio.Event()

    async def transaction_left_open_across_a_slow_await() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (7)"))
            await release.wait()

    holder = asyncio.create_task(transaction_left_open_across_a_slow_await(), name="the-holder")
    await asyncio.sleep(0.05)
    with caplog.at_level("WARNING", logger="kiln.core.db"), pytest.raises(Exception, match="write gate"):
        await _write_one(engine)
    waited, gave_up = (record.getMessage() for record in caplog.records)
    for message in (waited, gave_up):
        assert "task the-holder" in message and "'INSERT INTO t VALUES (7)'" in message
        # Where the holder waits now, innermost first.
        assert "Event.wait" in message.split("now at:")[1].split("<-")[0]
        assert "transaction_left_open_across_a_slow_await" in message
    assert "still waiting" in waited and "gave up" in gave_up
    release.set()
    await holder
    await _write_one(engine)  # the gate opened with the holder's commit
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2


async def _connection_in_a_failed_write(path: Path):
    """A connection whose write transaction is open and whose last statement failed mid-write (a
    foreign key gone), as a sync job's chunk insert does after its knowledge base was deleted."""
    conn = await sqlite_async.connector([str(path)], {"timeout": 0.2})()
    cursor = await conn.cursor()
    for statement in (
        "PRAGMA foreign_keys=ON",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (parent INTEGER REFERENCES parent (id))",
        "INSERT INTO parent VALUES (1)",
    ):
        await cursor.execute(statement)
    await conn.commit()
    await cursor.execute("INSERT INTO child VALUES (1)")  # the transaction's first write
    return conn, cursor


def _another_writer_can_write(path: Path) -> None:
    other = sqlite3.connect(path, timeout=0.2)
    try:
        other.execute("INSERT INTO parent VALUES (2)")
        other.commit()
    finally:
        other.close()


async def test_a_failed_write_leaves_no_lock_behind_the_close(tmp_path: Path):
    conn, cursor = await _connection_in_a_failed_write(tmp_path / "fk.db")
    with pytest.raises(sqlite3.IntegrityError):
        await cursor.execute("INSERT INTO child VALUES (99)")
    assert cursor._cursor is None  # the failed statement is not kept: the close is a real close
    await conn.close()  # the cursor object is still referenced here, as by a traceback
    _another_writer_can_write(tmp_path / "fk.db")


async def test_a_connection_closed_with_a_statement_still_referenced_rolls_back_first(tmp_path: Path):
    conn, _ = await _connection_in_a_failed_write(tmp_path / "fk.db")
    held: list[sqlite3.Cursor] = []

    def fail_and_keep_the_cursor(sqlite: sqlite3.Connection) -> None:
        held.append(sqlite.cursor())
        with contextlib.suppress(sqlite3.IntegrityError):
            held[0].execute("INSERT INTO child VALUES (99)")

    await conn.run(fail_and_keep_the_cursor)
    await conn.close()  # sqlite3_close_v2 leaves a zombie while `held` lives: it must hold no lock
    _another_writer_can_write(tmp_path / "fk.db")
    assert held
