"""JobRunner: claims jobs atomically, runs their handlers in named worker slots, heartbeats,
honours cancellation, retries transient failures with backoff and recovers lost jobs.

Every state change is a conditional UPDATE (`WHERE status = ... AND attempts = ...`), so a job
is never run twice at once and a late write from a worker that lost its job is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update

from kiln.core.db import utcnow
from kiln.core.jobs.batching import GroupCommit
from kiln.core.jobs.context import CpuPool, JobCancelled, JobContext, TransientJobError
from kiln.core.jobs.models import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Worker, job_to_dict
from kiln.core.jobs.registry import get_handler
from kiln.core.jobs.service import JOB_CANCEL, JOB_UPDATED
from kiln.core.jobs.stopping import wait_then_cancel
from kiln.core.jobs.store import JobStore, Outcome

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from kiln.core.kernel import Kernel

log = logging.getLogger(__name__)


@dataclass
class _Running:
    job: Job
    slot: str
    ctx: JobContext
    task: asyncio.Task[Any]
    cancel_timer: asyncio.TimerHandle | None = None


STOP_WAIT_SECONDS = 10.0  # how long a stop waits for a loop or a cancelled handler to wind up


class JobRunner:
    def __init__(self, kernel: Kernel, slot_names: list[str], *, queue: str = "default"):
        self.kernel = kernel
        self.settings = kernel.settings
        self.db = kernel.db
        self.queue = queue
        self.slot_names = list(slot_names)
        self._free: asyncio.Queue[str] = asyncio.Queue()
        for name in self.slot_names:
            self._free.put_nowait(name)
        self._running: dict[str, _Running] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.cpu = CpuPool(self.settings.cpu_workers or os.cpu_count() or 1, nice=self.settings.cpu_workers_nice)
        self.host = socket.gethostname()
        self._claims: GroupCommit[tuple[str, str], Job | None] = GroupCommit(self._flush_claims)
        self._finishes: GroupCommit[Outcome, bool] = GroupCommit(self._flush_finishes)
        self._store = JobStore(self.db)

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        now = utcnow()
        async with self.db.session() as session:
            for name in self.slot_names:
                worker = await session.get(Worker, name)
                if worker is None:
                    worker = Worker(name=name, jobs_done=0, jobs_done_today=0)
                    session.add(worker)
                worker.queue, worker.status, worker.current_job_id = self.queue, "idle", None
                worker.host, worker.pid, worker.heartbeat_at, worker.started_at = self.host, os.getpid(), now, now
            await session.commit()
        self._loops.append(asyncio.create_task(self._heartbeat_loop()))
        self._loops.append(asyncio.create_task(self._cancel_listener()))

    async def stop(self) -> None:
        """Stop taking work; jobs still running go back to the queue without using up an attempt.

        Every wait here is bounded and none swallows a cancel of the stop itself: a handler stuck
        in its clean-up must not keep the server (or its shutdown timeout) from ending.
        """
        self._stopping = True
        self._stop_event.set()
        for task in self._loops[1:]:  # [0] is the heartbeat loop
            task.cancel()
        # The heartbeat loop ends at its next pause; cancelling it mid-write could wedge a connection.
        await wait_then_cancel(self._loops, STOP_WAIT_SECONDS, "the runner's loops")
        self._loops.clear()
        for timer in self._timers:
            timer.cancel()
        running = list(self._running.values())
        for item in running:
            item.task.cancel()
        await wait_then_cancel((item.task for item in running), STOP_WAIT_SECONDS, "the cancelled job handlers")
        async with self.db.session() as session:
            await session.execute(
                update(Worker).where(Worker.name.in_(self.slot_names)).values(status="offline", current_job_id=None)
            )
            await session.commit()
        self.cpu.shutdown()

    # ----------------------------------------------------------------- execution
    async def execute(self, job_id: str) -> None:
        """Body of the queue task: take a free slot, claim the job, run it."""
        if self._stopping:
            return
        slot = await self._free.get()
        try:
            if self._stopping:  # stopped while waiting for a slot: leave the job queued
                return
            job = await self._claim(job_id, slot)
            if job is not None and self._stopping:
                # The stop began while the claim was being written: it has cancelled the handlers it
                # knew of and will not wait for this one, so the job goes back to the queue unrun.
                await self._requeue_on_shutdown(job, job.attempts, slot)
            elif job is not None:
                await self._run(job, slot)
        finally:
            self._free.put_nowait(slot)

    async def _claim(self, job_id: str, slot: str) -> Job | None:
        job = await self._claims.submit((job_id, slot))
        if job is not None:
            await self.kernel.events.publish(JOB_UPDATED, job_to_dict(job))
        return job

    async def _flush_claims(self, items: Sequence[tuple[str, str]]) -> list[Job | None]:
        claimed = await self._store.claim(items, utcnow())
        return [claimed.get(job_id) for job_id, _ in items]

    async def _run(self, job: Job, slot: str) -> None:
        spec = get_handler(job.kind)
        attempt = job.attempts
        if spec is None:
            await self._finish(job, attempt, slot, FAILED, error=f"no handler registered for kind {job.kind!r}")
            return

        async def save_progress(fraction: float, message: str | None) -> None:
            async with self.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == RUNNING, Job.attempts == attempt)
                    .values(progress=fraction, progress_message=message, updated_at=utcnow())
                )
                await session.commit()

        async def publish_progress(fraction: float, message: str | None) -> None:
            job.progress, job.progress_message = fraction, message
            await self.kernel.events.publish(JOB_UPDATED, job_to_dict(job))

        completed: dict[str, Any] = {}  # what `ctx.complete_in` wrote, in the handler's transaction

        async def complete_in(conn: AsyncConnection, value: Any) -> bool:
            now, value = utcnow(), _jsonable(value)
            written = await self._store.succeed_in(conn, job.id, attempt, slot, value, now)
            completed.clear()  # an op re-run alone after its group failed: the last run counts
            if written:
                completed.update(result=value, at=now)
            return written

        ctx = JobContext(
            job,
            self.kernel,
            save_progress=save_progress,
            publish_progress=publish_progress,
            cpu=self.cpu,
            progress_interval=self.settings.job_progress_interval,
            cancel_grace=self.settings.job_cancel_grace_seconds,
            complete_in=complete_in,
        )
        task = asyncio.create_task(spec.fn(ctx, dict(job.payload or {})))
        item = _Running(job, slot, ctx, task)
        self._running[job.id] = item
        try:
            if job.cancel_requested_at is not None:
                self._request_cancel(job.id)
            try:
                result = await task
            except (JobCancelled, asyncio.CancelledError):
                if self._stopping and not ctx.cancelled.is_set():
                    await self._requeue_on_shutdown(job, attempt, slot)
                else:
                    await self._finish(job, attempt, slot, CANCELLED, error="cancelled")
                return
            except TransientJobError as exc:
                await self._transient(job, attempt, slot, exc)
                return
            except Exception as exc:
                log.exception("job %s (%s) failed", job.id, job.kind)
                await self._finish(job, attempt, slot, FAILED, error=_describe(exc))
                return
            if completed:  # written and committed by the handler itself: announce it
                job.status, job.error, job.result, job.progress = SUCCEEDED, None, completed["result"], 1.0
                job.finished_at = job.updated_at = completed["at"]
                await self.kernel.events.publish(JOB_UPDATED, job_to_dict(job))
            elif ctx.cancelled.is_set():
                await self._finish(job, attempt, slot, CANCELLED, error="cancelled")
            else:
                await self._finish(job, attempt, slot, SUCCEEDED, result=_jsonable(result))
        finally:
            if item.cancel_timer:
                item.cancel_timer.cancel()
            # Only our own entry: when recovery re-queued this job under a lagging heartbeat and this
            # runner claimed it again in another slot, the entry is the newer attempt's; dropping it
            # would leave that attempt without heartbeats (recovered again while it runs) or cancels.
            if self._running.get(job.id) is item:
                del self._running[job.id]

    async def _finish(
        self,
        job: Job,
        attempt: int,
        slot: str,
        status: str,
        *,
        result: Any = None,
        error: str | None = None,
        run_after: datetime | None = None,
    ) -> None:
        now = utcnow()
        job.status, job.error, job.updated_at = status, error, now
        if status == QUEUED:
            job.run_after, job.worker, job.heartbeat_at = run_after, None, None
        else:
            job.finished_at, job.result = now, result
            if status == SUCCEEDED:
                job.progress = 1.0
        if await self._finishes.submit(Outcome(job, attempt, slot)):
            await self.kernel.events.publish(JOB_UPDATED, job_to_dict(job))

    async def _flush_finishes(self, items: Sequence[Outcome]) -> list[bool]:
        written = await self._store.write_outcomes(items, utcnow())
        return [item.job.id in written for item in items]

    async def _transient(self, job: Job, attempt: int, slot: str, exc: TransientJobError) -> None:
        if attempt >= job.max_attempts:
            await self._finish(job, attempt, slot, FAILED, error=f"{_describe(exc)} (after {attempt} attempts)")
            return
        delay = exc.retry_after
        if delay is None:
            delay = self.settings.job_retry_backoff_seconds * (2 ** (attempt - 1))
        await self._finish(
            job, attempt, slot, QUEUED, error=_describe(exc), run_after=utcnow() + timedelta(seconds=delay)
        )
        self.kick_later(job.id, delay)

    async def _requeue_on_shutdown(self, job: Job, attempt: int, slot: str) -> None:
        async with self.db.session() as session:
            await session.execute(
                update(Job)
                .where(Job.id == job.id, Job.status == RUNNING, Job.attempts == attempt)
                .values(status=QUEUED, attempts=Job.attempts - 1, worker=None, updated_at=utcnow())
            )
            # The slot too (the stop's own sweep of the slots may already have run).
            await session.execute(
                update(Worker)
                .where(Worker.name == slot, Worker.current_job_id == job.id)
                .values(status="offline", current_job_id=None)
            )
            await session.commit()

    def kick_later(self, job_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            if not self._stopping:
                asyncio.ensure_future(self.kernel.jobs.kick([job_id]))

        timer = loop.call_later(max(0.0, delay) + 0.01, fire)
        self._timers.add(timer)

    # ----------------------------------------------------------------- cancellation
    def _request_cancel(self, job_id: str) -> None:
        item = self._running.get(job_id)
        if item is None or item.ctx.cancelled.is_set():
            return
        item.ctx.cancelled.set()
        # Cooperative first; then the job's processes are killed and a handler that does not look
        # is cancelled at its next await.
        grace = self.settings.job_cancel_grace_seconds

        def stop() -> None:
            item.ctx.processes.kill()
            item.task.cancel()

        item.cancel_timer = asyncio.get_running_loop().call_later(grace, stop)

    async def _cancel_listener(self) -> None:
        async with self.kernel.events.subscribe(JOB_CANCEL) as sub:
            async for _topic, data in sub:
                job_id = data.get("id")
                if job_id in self._running:
                    self._request_cancel(job_id)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.job_heartbeat_seconds
        while not self._stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), interval)
                return  # stopping (a timeout skips this line: time to beat)
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("heartbeat failed", exc_info=True)

    async def _heartbeat(self) -> None:
        now = utcnow()
        ids = list(self._running)
        async with self.db.session() as session:
            if ids:
                await session.execute(
                    update(Job).where(Job.id.in_(ids), Job.status == RUNNING).values(heartbeat_at=now)
                )
                cancelled = await session.scalars(
                    select(Job.id).where(Job.id.in_(ids), Job.cancel_requested_at.is_not(None))
                )
                for job_id in cancelled:
                    self._request_cancel(job_id)
            await session.execute(update(Worker).where(Worker.name.in_(self.slot_names)).values(heartbeat_at=now))
            await session.commit()


async def recover_jobs(kernel: Kernel, *, orphan_all_running: bool = False) -> list[str]:
    """Re-queue (or fail, when out of attempts) running jobs whose worker is gone, and re-kick
    queued jobs that are due but were never claimed. Returns the ids kicked.

    `orphan_all_running` is for an embedded server's start-up: it is the only executor, so
    every job still marked running was lost with the previous process.
    """
    settings, db = kernel.settings, kernel.db
    now = utcnow()
    stale_before = now - timedelta(seconds=settings.job_stale_seconds)
    lost = Job.status == RUNNING
    if not orphan_all_running:
        lost = and_(lost, or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before))
    async with db.session() as session:
        requeued = await session.scalars(
            update(Job)
            .where(lost, Job.attempts < Job.max_attempts)
            .values(
                status=QUEUED,
                worker=None,
                run_after=None,
                updated_at=now,
                error="recovered: its worker stopped heartbeating",
            )
            .returning(Job.id)
        )
        requeued_ids = list(requeued)
        failed = await session.scalars(
            update(Job)
            .where(lost, Job.attempts >= Job.max_attempts)
            .values(
                status=FAILED,
                finished_at=now,
                updated_at=now,
                error="worker lost while running and no attempts are left",
            )
            .returning(Job.id)
        )
        failed_ids = list(failed)
        due = Job.status == QUEUED
        due = and_(due, or_(Job.run_after.is_(None), Job.run_after <= now))
        if not orphan_all_running:
            due = and_(due, Job.updated_at < stale_before)
        waiting = await session.scalars(update(Job).where(due).values(updated_at=now).returning(Job.id))
        kick_ids = requeued_ids + [i for i in waiting if i not in set(requeued_ids)]
        await session.execute(
            update(Worker)
            .where(Worker.status != "offline", Worker.heartbeat_at < stale_before)
            .values(status="offline", current_job_id=None)
        )
        await session.commit()
    if requeued_ids or failed_ids:
        log.warning("recovered jobs: requeued %s, failed %s", requeued_ids, failed_ids)
    for job_id in requeued_ids + failed_ids:
        job = await kernel.jobs.get(job_id)
        if job is not None:
            await kernel.events.publish(JOB_UPDATED, job_to_dict(job))
    if kick_ids:
        await kernel.jobs.kick(kick_ids)
    return kick_ids


async def schedule_future_retries(kernel: Kernel, runner: JobRunner) -> None:
    """Queued jobs waiting for a backoff that outlived the previous process: kick them when due."""
    now = utcnow()
    async with kernel.db.session() as session:
        rows = await session.execute(select(Job.id, Job.run_after).where(Job.status == QUEUED, Job.run_after > now))
        for job_id, run_after in rows:
            runner.kick_later(job_id, (run_after - now).total_seconds())


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if text else type(exc).__name__


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (dict, list, str, int, float, bool)):
        return value
    return {"value": str(value)}
