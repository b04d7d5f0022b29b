"""Status transitions of concurrent media jobs, grouped into shared transactions.

Ten worker slots claim, advance and finish their items at nearly the same moments (a batch of
uploads is kicked together; results come back from the CPU pool together). Each of those steps
is a couple of statements; a transaction of its own for each costs more than the statements.
``run(kernel, op)`` hands ``op(conn)`` to the kernel's group commit: while one transaction is
in flight the next ops queue up, and the next transaction takes them all. The task-log rows the
ops write (``status.logged``) are collected and inserted with one statement per transaction.
The transaction is a Core connection, not an ORM session: every op is Core statements, and the
session's unit-of-work bookkeeping cost more than they did.

An op must be safe to retry: when a grouped transaction fails, each of its ops is run again
alone in its own transaction, so one bad op (a constraint the others did not break) fails only
its own caller. An idle server pays nothing: a lone op is flushed at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from kiln.apps.media.models import MediaTaskLog
from kiln.core.jobs.batching import GroupCommit

T = TypeVar("T")
Op = Callable[[AsyncConnection], Awaitable[Any]]
# Task-log rows waiting for the grouped transaction's insert; set only while its ops run.
_log_buffer: ContextVar[list[dict[str, Any]] | None] = ContextVar("media_log_buffer", default=None)
_LOGS = MediaTaskLog.__table__
INSERT_LOGS = insert(_LOGS)  # built once: its cache key is then computed once, not per transaction


async def insert_logs(session: AsyncSession | AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Task-log rows, buffered when this runs inside a grouped transaction."""
    buffer = _log_buffer.get()
    if buffer is not None:
        buffer.extend(rows)
    elif rows:
        await session.execute(INSERT_LOGS, rows)


class _Batcher:
    def __init__(self, kernel: Any) -> None:
        self._kernel = weakref.ref(kernel)
        self._group: GroupCommit[Op, Any] = GroupCommit(self._transaction, max_batch=64, retry_alone=True)
        self.ops = self.transactions = 0  # how well grouping works (bench, tests)

    async def run(self, op: Op) -> Any:
        return await self._group.submit(op)

    async def _transaction(self, ops: Sequence[Op]) -> list[Any]:
        kernel = self._kernel()
        assert kernel is not None
        self.ops += len(ops)
        self.transactions += 1
        async with kernel.db.engine.begin() as conn:  # commits on leaving
            buffer: list[dict[str, Any]] = []
            token = _log_buffer.set(buffer)
            try:
                values = [await op(conn) for op in ops]
            finally:
                _log_buffer.reset(token)
            if buffer:
                await conn.execute(INSERT_LOGS, buffer)
        return values


_batchers: weakref.WeakKeyDictionary[Any, _Batcher] = weakref.WeakKeyDictionary()


def batcher(kernel: Any) -> _Batcher:
    found = _batchers.get(kernel)
    if found is None:
        found = _batchers[kernel] = _Batcher(kernel)
    return found


async def run(kernel: Any, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """``await op(conn)`` in a transaction shared with the ops of other jobs queued meanwhile,
    committed before this returns (so the caller may publish what it changed)."""
    return await batcher(kernel).run(op)
