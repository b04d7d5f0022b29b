"""What a job handler sees: its job, progress reporting, cancellation and the CPU process pool."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from kiln.core.jobs.processes import JobProcesses, child_init, kill_pool

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

    from kiln.core.jobs.models import Job
    from kiln.core.kernel import Kernel

T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled."""


class TransientJobError(Exception):
    """A failure worth retrying (an outside service down, a lock busy): retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class CpuPool:
    """Processes for CPU-heavy steps, one call per process so a cancelled call can be killed alone.

    The processes run at a lower priority (``nice``): the server is one Python thread, and with
    as many busy step processes as cores the scheduler would give it only its fair share of a
    core. Then requests and the jobs' own database steps queue behind the CPU steps and the steps
    run out of work; niced, the steps take whatever the server leaves.
    """

    def __init__(self, size: int, *, nice: int = 0):
        self.size = max(1, size)
        self.nice = nice
        self._idle: list[ProcessPoolExecutor] = []
        self._slots = asyncio.Semaphore(self.size)
        self._context = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")

    def _take(self) -> ProcessPoolExecutor:
        if self._idle:
            return self._idle.pop()
        return ProcessPoolExecutor(
            max_workers=1, mp_context=self._context, initializer=child_init, initargs=(os.getpid(), self.nice)
        )

    _kill = staticmethod(kill_pool)

    async def run(self, fn: Callable[..., T], *args: Any, cancelled: asyncio.Event, grace: float) -> T:
        async with self._slots:
            executor = self._take()
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(executor, partial(fn, *args))
            cancel_wait = asyncio.ensure_future(cancelled.wait())
            healthy = False
            try:
                await asyncio.wait({future, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
                if future.done():
                    healthy = True
                    return future.result()
                # Cancel requested: give the step its grace period, then take the process down.
                done, _ = await asyncio.wait({future}, timeout=grace)
                healthy = bool(done)
                raise JobCancelled("cancelled during a CPU step")
            finally:
                cancel_wait.cancel()
                if healthy:
                    self._idle.append(executor)
                else:
                    self._kill(executor)

    def shutdown(self) -> None:
        for executor in self._idle:
            executor.shutdown(wait=False, cancel_futures=True)
        self._idle.clear()


class JobContext:
    """Handed to every handler: `progress`, `raise_if_cancelled`, `run_cpu`, `run_blocking`,
    `process_pool`, `session`, `complete_in`, `kernel`."""

    def __init__(
        self,
        job: Job,
        kernel: Kernel,
        *,
        save_progress: Callable[[float, str | None], Awaitable[None]],
        publish_progress: Callable[[float, str | None], Awaitable[None]],
        cpu: CpuPool,
        progress_interval: float,
        cancel_grace: float,
        complete_in: Callable[[AsyncConnection, Any], Awaitable[bool]] | None = None,
    ):
        self.job = job
        self.kernel = kernel
        self.cancelled = asyncio.Event()
        self.processes = JobProcesses(cpu.nice)
        self._save_progress = save_progress
        self._publish_progress = publish_progress
        self._cpu = cpu
        self._interval = progress_interval
        self._grace = cancel_grace
        self._complete_in = complete_in
        self._last_saved = 0.0
        self._last_published = 0.0
        self.progress_value = 0.0
        self.progress_message: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        return self.kernel.db.session()

    async def complete_in(self, conn: AsyncConnection, result: Any = None) -> bool:
        """End this job as SUCCEEDED with `result`, and free its worker slot, inside the caller's
        open transaction: its commit then carries the job's end and the runner writes no outcome
        of its own (one commit fewer per job). For the handler's last transaction: the handler
        returns `result` once that transaction committed.

        Fenced like every outcome (the job must still be running at this attempt); False, and
        nothing written, otherwise. It counts only if the handler then returns normally: a handler
        that raises gets the runner's outcome as always, which leaves a committed SUCCEEDED alone.
        Without a runner (a context built by hand) nothing is written and this returns False."""
        if self._complete_in is None:
            return False
        return await self._complete_in(conn, result)

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled("job cancelled")

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress; persisted at most every `progress_interval`, published at most every 0.1 s."""
        fraction = min(1.0, max(0.0, float(fraction)))
        changed = fraction != self.progress_value or message != self.progress_message
        self.progress_value, self.progress_message = fraction, message
        self.raise_if_cancelled()
        if not changed:
            return
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last_saved >= self._interval:
            self._last_saved = now
            await self._save_progress(fraction, message)
        if fraction >= 1.0 or now - self._last_published >= 0.1:
            self._last_published = now
            await self._publish_progress(fraction, message)

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the process pool; on cancel it is killed after the grace period."""
        self.raise_if_cancelled()
        return await self._cpu.run(fn, *args, cancelled=self.cancelled, grace=self._grace)

    def process_pool(self, max_workers: int, **kwargs: Any) -> ProcessPoolExecutor:
        """A process pool for this job's own fan-out (kwargs: `mp_context`, `initializer`,
        `initargs`): its processes die with the server, and are killed when a cancel's grace
        period ends. Callable from the thread of `run_blocking`."""
        return self.processes.pool(max_workers, **kwargs)

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking `fn` in a thread; the job does not end before the thread does.

        `asyncio.to_thread` would let a cancelled job be marked cancelled (and retried) while its
        thread still deletes or writes files; here a cancelled handler first kills the job's
        process pools, then waits for the thread (it should watch `ctx.cancelled.is_set`)."""
        future = asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.processes.kill()
            try:
                await asyncio.wait_for(asyncio.shield(future), timeout=max(5.0, 4 * self._grace))
            except TimeoutError:
                logging.getLogger(__name__).warning("job %s: its thread still runs after the cancel", self.job.id)
            except BaseException:  # the thread's own end (its error or result) no longer matters
                pass
            raise
