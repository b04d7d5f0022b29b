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
        self._main: asyncio.Task[None] | None = None
        self._lock_conn: Any = None

    def start(self) -> None:
        self._main = asyncio.create_task(self._lead_then_run())

    async def stop(self) -> None:
        if self._main:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._main
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
        if self.use_lock:
            await self._acquire()
            log.info("periodic tasks: this process is the leader")
        self.is_leader.set()
        loops = [asyncio.create_task(self._loop(spec)) for spec in self.tasks]
        watchdog = asyncio.create_task(self._watch_lock()) if self.use_lock else None
        try:
            await asyncio.gather(*loops, *([watchdog] if watchdog else []))
        finally:
            for task in loops:
                task.cancel()
            if watchdog:
                watchdog.cancel()

    async def _watch_lock(self) -> None:
        # A dropped lock connection means another process may lead now: stop (and restart to re-elect).
        while True:
            await asyncio.sleep(5.0)
            try:
                await self._lock_conn.scalar(text("SELECT 1"))
            except Exception:
                log.warning("periodic: lost the leader connection; re-electing")
                self.is_leader.clear()
                self._lock_conn = None
                self._main = asyncio.create_task(self._lead_then_run())
                raise asyncio.CancelledError from None

    async def _loop(self, spec: PeriodicSpec) -> None:
        while True:
            started = time.monotonic()
            try:
                await spec.fn(self.kernel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic task %s failed", spec.name)
            await asyncio.sleep(max(0.05, spec.every - (time.monotonic() - started)))
