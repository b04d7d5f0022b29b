"""Runs the periodic tasks: in `serve` (embedded), or in exactly one `kiln worker` (distributed),
the one holding a PostgreSQL advisory lock. When that worker dies its connection closes, the
lock is released, and another worker takes over within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from kiln.core.jobs.registry import PeriodicSpec, periodic_tasks
from kiln.core.jobs.stopping import wait_then_cancel

if TYPE_CHECKING:
    from kiln.core.kernel import Kernel

log = logging.getLogger(__name__)
ADVISORY_LOCK_KEY = 0x4B494C4E  # "KILN"


class PeriodicRunner:
    def __init__(self, kernel: Kernel, *, use_lock: bool, extra: list[PeriodicSpec] | None = None):
        self.kernel = kernel
        self.use_lock = use_lock
        self.tasks = [*(extra or []), *periodic_tasks()]
        self.is_leader = asyncio.Event()
        self._stopping = asyncio.Event()
        self._main: asyncio.Task[None] | None = None
        self._lock_conn: Any = None

    def start(self) -> None:
        self._main = asyncio.create_task(self._lead_then_run())

    async def stop(self, timeout: float = 10.0) -> None:
        """Let a task that is running finish its round (a cancel mid-query can wedge a connection),
        then stop; cancel only what outlives `timeout`."""
        self._stopping.set()
        if self._main:
            left = await wait_then_cancel([self._main], timeout, "the periodic tasks")
            if left:
                await asyncio.wait(left, timeout=timeout)
            if self._main.done() and not self._main.cancelled() and self._main.exception() is not None:
                log.warning("periodic tasks ended with an error", exc_info=self._main.exception())
        if self._lock_conn is not None:
            # A pooled connection outlives close(): unlock explicitly, or drop the connection.
            try:
                await self._lock_conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
                await self._lock_conn.commit()
                await self._lock_conn.close()
            except Exception:
                with contextlib.suppress(Exception):
                    await self._lock_conn.invalidate()
            self._lock_conn = None
        self.is_leader.clear()

    async def _acquire(self) -> None:
        while True:
            try:
                conn = await self.kernel.db.engine.connect()
                got = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
                await conn.commit()
                if got:
                    self._lock_conn = conn
                    return
                await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("periodic: advisory lock attempt failed", exc_info=True)
            await asyncio.sleep(2.0)

    async def _lead_then_run(self) -> None:
        while not self._stopping.is_set():
            if self.use_lock and not await self._acquire_or_stop():
                return
            if self.use_lock:
                log.info("periodic tasks: this process is the leader")
            self.is_leader.set()
            term = asyncio.Event()
            loops = [asyncio.create_task(self._loop(spec, term)) for spec in self.tasks]
            try:
                await self._hold(term)
            finally:
                term.set()
                # Loops stop at their next pause, never in the middle of a round.
                await asyncio.gather(*loops, return_exceptions=True)
                self.is_leader.clear()
            if self.use_lock and not self._stopping.is_set():
                log.warning("periodic: lost the leader connection; re-electing")
                self._lock_conn = None

    async def _acquire_or_stop(self) -> bool:
        acquire = asyncio.create_task(self._acquire())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({acquire, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if acquire.done():
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
        return False

    async def _hold(self, term: asyncio.Event) -> None:
        """Return when stopping, or (with a lock) when the lock's connection is gone."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 5.0)
            if self.use_lock and not self._stopping.is_set():
                try:
                    await self._lock_conn.scalar(text("SELECT 1"))
                except Exception:
                    return

    async def _loop(self, spec: PeriodicSpec, term: asyncio.Event) -> None:
        while not term.is_set():
            started = time.monotonic()
            try:
                await spec.fn(self.kernel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task %s failed", spec.name)
            pause = max(0.05, spec.every - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(term.wait(), pause)
