"""The job engine in embedded mode, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update

import tests.core.job_handlers  # noqa: F401  (registers the test handlers)
from kiln.core.db import utcnow
from kiln.core.jobs import (
    CANCELLED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobError,
    Worker,
)
from kiln.core.jobs.context import CpuPool
from kiln.core.jobs.runner import recover_jobs
from kiln.core.kernel import Kernel
from tests.conftest import make_settings


async def wait_for_status(kernel: Kernel, job_id: str, statuses: set[str], timeout: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = await kernel.jobs.get(job_id)
        assert job is not None
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stayed {job.status}, wanted {statuses}")
        await asyncio.sleep(0.02)


async def test_submit_runs_and_stores_result(kernel: Kernel):
    async with kernel.events.subscribe("job.") as events:
        job = await kernel.jobs.submit("test.noop", {"n": 7}, owner_id="u1")
        assert job.status == QUEUED and job.surface == "test"
        done = await wait_for_status(kernel, job.id, {SUCCEEDED})
        seen = []
        while not events.queue.empty():
            seen.append(events.queue.get_nowait()[1]["status"])
    assert done.result == {"n": 7}
    assert done.attempts == 1 and done.progress == 1.0 and done.owner_id == "u1"
    assert done.started_at is not None and done.finished_at is not None
    assert done.finished_at.tzinfo is not None
    assert seen[0] == QUEUED and RUNNING in seen and seen[-1] == SUCCEEDED


async def test_unknown_kind_is_refused(kernel: Kernel):
    with pytest.raises(JobError, match="no handler"):
        await kernel.jobs.submit("test.does-not-exist", {})


async def test_thousand_jobs_none_lost_none_twice(kernel: Kernel, tmp_path: Path):
    log = tmp_path / "runs.log"
    jobs = await kernel.jobs.submit_many("test.record", [{"log": str(log)} for _ in range(1000)])
    ids = {job.id for job in jobs}
    deadline = time.monotonic() + 120
    while True:
        items, total = await kernel.jobs.list(kind="test.record", status=SUCCEEDED, limit=1)
        if total == 1000:
            break
        assert time.monotonic() < deadline, f"only {total} of 1000 succeeded"
        await asyncio.sleep(0.1)
    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(runs) == ids
    assert max(runs.values()) == 1


async def test_progress_is_persisted_and_published(kernel: Kernel):
    async with kernel.events.subscribe("job.updated") as events:
        job = await kernel.jobs.submit("test.sleep", {"seconds": 0.6})
        await asyncio.sleep(0.35)
        midway = await kernel.jobs.get(job.id)
        await wait_for_status(kernel, job.id, {SUCCEEDED})
        progresses = []
        while not events.queue.empty():
            _, data = events.queue.get_nowait()
            if data["id"] == job.id:
                progresses.append(data["progress"])
    assert midway is not None and 0 < midway.progress < 1
    assert midway.progress_message and midway.progress_message.startswith("step ")
    assert progresses == sorted(progresses) and progresses[-1] == 1.0
    assert len(set(progresses)) >= 3


async def test_transient_errors_retry_with_backoff(kernel: Kernel):
    job = await kernel.jobs.submit("test.flaky", {"succeed_on": 3})
    done = await wait_for_status(kernel, job.id, {SUCCEEDED, FAILED})
    assert done.status == SUCCEEDED
    assert done.attempts == 3 and done.result == {"attempt": 3}


async def test_transient_errors_fail_when_attempts_run_out(kernel: Kernel):
    job = await kernel.jobs.submit("test.flaky", {"succeed_on": 9})
    done = await wait_for_status(kernel, job.id, {FAILED})
    assert done.attempts == 3 and "after 3 attempts" in (done.error or "")


async def test_failure_then_manual_retry(kernel: Kernel):
    job = await kernel.jobs.submit("test.broken", {})
    failed = await wait_for_status(kernel, job.id, {FAILED})
    assert failed.error == "the payload makes no sense" and failed.attempts == 1
    retried = await kernel.jobs.retry(job.id)
    assert retried.status == QUEUED
    again = await wait_for_status(kernel, job.id, {FAILED})
    assert again.attempts == 2
    ok = await kernel.jobs.submit("test.noop", {})
    await wait_for_status(kernel, ok.id, {SUCCEEDED})
    with pytest.raises(JobError, match="only failed or cancelled"):
        await kernel.jobs.retry(ok.id)


async def test_cancel_queued_job_at_once(tmp_path: Path, db_url: str):
    kernel = Kernel(make_settings(tmp_path / "home", db_url, worker_names=["solo"]))
    await kernel.start("serve")
    try:
        blocker = await kernel.jobs.submit("test.sleep", {"seconds": 5})
        await wait_for_status(kernel, blocker.id, {RUNNING})
        waiting = await kernel.jobs.submit("test.noop", {})
        cancelled = await kernel.jobs.cancel(waiting.id)
        assert cancelled.status == CANCELLED and cancelled.finished_at is not None
        with pytest.raises(JobError, match="already cancelled"):
            await kernel.jobs.cancel(waiting.id)
        await kernel.jobs.cancel(blocker.id)
        await wait_for_status(kernel, blocker.id, {CANCELLED}, timeout=3)
        assert (await kernel.jobs.get(waiting.id)).status == CANCELLED
    finally:
        await kernel.stop()


@pytest.mark.parametrize("kind", ["test.sleep", "test.stubborn", "test.cpu"])
async def test_cancel_running_job_stops_within_two_seconds(kernel: Kernel, kind: str):
    job = await kernel.jobs.submit(kind, {"seconds": 30})
    await wait_for_status(kernel, job.id, {RUNNING})
    await asyncio.sleep(0.3 if kind != "test.cpu" else 1.0)  # let the CPU step reach its process
    started = time.monotonic()
    await kernel.jobs.cancel(job.id)
    done = await wait_for_status(kernel, job.id, {CANCELLED, FAILED, SUCCEEDED}, timeout=5)
    elapsed = time.monotonic() - started
    assert done.status == CANCELLED
    assert elapsed < 2.0, f"cancel took {elapsed:.2f}s"


async def test_cancelled_job_can_be_retried(kernel: Kernel):
    job = await kernel.jobs.submit("test.sleep", {"seconds": 10})
    await wait_for_status(kernel, job.id, {RUNNING})
    await kernel.jobs.cancel(job.id)
    await wait_for_status(kernel, job.id, {CANCELLED})
    await kernel.jobs.retry(job.id)
    # a short run this time: change nothing but let it be cancelled again quickly
    await wait_for_status(kernel, job.id, {RUNNING})
    await kernel.jobs.cancel(job.id)
    done = await wait_for_status(kernel, job.id, {CANCELLED})
    assert done.attempts == 2


async def test_list_filters_and_pagination(kernel: Kernel):
    for i in range(5):
        await kernel.jobs.submit("test.noop", {"n": i}, owner_id="alice")
    await kernel.jobs.submit("test.broken", {}, owner_id="bob")
    deadline = time.monotonic() + 10
    while (await kernel.jobs.list(status=[SUCCEEDED, FAILED]))[1] < 6:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    page, total = await kernel.jobs.list(owner_id="alice", limit=2, offset=0)
    assert total == 5 and len(page) == 2
    rest, _ = await kernel.jobs.list(owner_id="alice", limit=10, offset=2)
    assert len(rest) == 3 and not {j.id for j in page} & {j.id for j in rest}
    failed, nfailed = await kernel.jobs.list(status=FAILED)
    assert nfailed == 1 and failed[0].owner_id == "bob"
    _, by_kind = await kernel.jobs.list(kind="test.noop", surface="test")
    assert by_kind == 5
    with pytest.raises(JobError, match="unknown job status"):
        await kernel.jobs.list(status="exploded")


async def test_workers_table_shows_named_slots(kernel: Kernel):
    job = await kernel.jobs.submit("test.sleep", {"seconds": 1})
    running = await wait_for_status(kernel, job.id, {RUNNING})
    async with kernel.db.session() as session:
        workers = {w.name: w for w in await session.scalars(select(Worker))}
    assert set(workers) == set(kernel.settings.worker_names)
    busy = workers[running.worker]
    assert busy.status == "busy" and busy.current_job_id == job.id
    await wait_for_status(kernel, job.id, {SUCCEEDED})
    async with kernel.db.session() as session:
        after = await session.get(Worker, running.worker, populate_existing=True)
    assert after.status == "idle" and after.current_job_id is None and after.jobs_done_today >= 1


async def _make_orphan(kernel: Kernel, *, attempts: int, max_attempts: int) -> str:
    job = await kernel.jobs.submit("test.noop", {})
    await wait_for_status(kernel, job.id, {SUCCEEDED})
    stale = utcnow() - timedelta(minutes=5)
    async with kernel.db.session() as session:
        await session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                status=RUNNING,
                attempts=attempts,
                max_attempts=max_attempts,
                heartbeat_at=stale,
                finished_at=None,
                result=None,
                worker="gone/1",
            )
        )
        await session.commit()
    return job.id


async def test_recovery_requeues_stale_running_jobs(kernel: Kernel):
    job_id = await _make_orphan(kernel, attempts=1, max_attempts=3)
    kicked = await recover_jobs(kernel)
    assert job_id in kicked
    done = await wait_for_status(kernel, job_id, {SUCCEEDED})
    assert done.attempts == 2


async def test_recovery_fails_stale_jobs_without_attempts_left(kernel: Kernel):
    job_id = await _make_orphan(kernel, attempts=3, max_attempts=3)
    await recover_jobs(kernel)
    done = await kernel.jobs.get(job_id)
    assert done.status == FAILED and "no attempts are left" in done.error


async def test_fresh_running_jobs_are_left_alone(kernel: Kernel):
    job = await kernel.jobs.submit("test.sleep", {"seconds": 1.5})
    await wait_for_status(kernel, job.id, {RUNNING})
    assert job.id not in await recover_jobs(kernel)
    done = await wait_for_status(kernel, job.id, {SUCCEEDED})
    assert done.attempts == 1


async def test_restart_recovers_queued_and_running_jobs(tmp_path: Path, db_url: str):
    first = Kernel(make_settings(tmp_path / "home", db_url, worker_names=["solo"]))
    await first.start("serve")
    running = await first.jobs.submit("test.sleep", {"seconds": 1.0})
    await wait_for_status(first, running.id, {RUNNING})
    queued = await first.jobs.submit("test.noop", {})
    # Simulate a crash: the process vanishes without its orderly shutdown, and every task it ran
    # with it. Its periodic recovery too: left running, it re-queued jobs of the second server whose
    # heartbeat lagged and refreshed queued ones, "kicking" them into this runner, which drops kicks
    # once stopping, so the second server saw them again only a stale period later.
    await first.periodic.stop()
    first.runner._stopping = True
    for task in first.runner._loops:
        task.cancel()
    for item in list(first.runner._running.values()):
        item.task.cancel()
    # The runner's own unwinding (its requeue of the cancelled job) ends before the crash state is
    # written: landing after it, it undid that state (queued again, the attempt given back).
    await first.broker.drain()
    await first.db.dispose()
    # A killed process leaves its job marked running with attempts used (the orderly path requeued it).
    crashed = Kernel(first.settings)
    async with crashed.db.session() as session:
        await session.execute(update(Job).where(Job.id == running.id).values(status=RUNNING, attempts=1))
        await session.commit()
    await crashed.db.dispose()

    second = Kernel(make_settings(tmp_path / "home", db_url, worker_names=["a", "b"]))
    await second.start("serve")
    try:
        assert (await wait_for_status(second, queued.id, {SUCCEEDED})).attempts == 1
        recovered = await wait_for_status(second, running.id, {SUCCEEDED})
        assert recovered.attempts == 2
    finally:
        await second.stop()


async def test_an_older_attempt_ending_leaves_the_newer_attempt_tracked(kernel: Kernel):
    """Recovery re-queues a running job whose heartbeat lagged past `job_stale_seconds` (a loaded
    machine) while its handler still runs, and this runner may claim it again in another slot. The
    older attempt ending must not drop the newer attempt's entry: that one then got no heartbeats
    (recovered again while it ran) and no cancels."""
    job = await kernel.jobs.submit("test.stubborn", {"seconds": 1.0})
    await wait_for_status(kernel, job.id, {RUNNING})
    assert kernel.runner is not None
    while job.id not in kernel.runner._running:  # the claim is written just before the handler starts
        await asyncio.sleep(0.01)
    older = kernel.runner._running[job.id]
    async with kernel.db.session() as session:  # what recovery does; the next attempt runs longer
        await session.execute(
            update(Job).where(Job.id == job.id).values(status=QUEUED, worker=None, payload={"seconds": 30})
        )
        await session.commit()
    await kernel.jobs.kick([job.id])
    assert (await wait_for_status(kernel, job.id, {RUNNING})).attempts == 2
    await older.task
    await asyncio.sleep(0.5)  # the older attempt's outcome (fenced out) and clean-up
    assert job.id in kernel.runner._running
    await kernel.jobs.cancel(job.id)
    assert (await wait_for_status(kernel, job.id, {CANCELLED, SUCCEEDED, FAILED})).status == CANCELLED


async def test_utc_timestamps_round_trip(kernel: Kernel):
    job = await kernel.jobs.submit("test.noop", {})
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=plus_two)
    async with kernel.db.session() as session:
        await session.execute(update(Job).where(Job.id == job.id).values(run_after=moment))
        await session.commit()
    async with kernel.db.session() as session:
        stored = await session.scalar(select(Job.run_after).where(Job.id == job.id))
    assert stored == moment
    assert stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    assert stored == datetime(2026, 3, 1, 10, 30, 15, 123456, tzinfo=UTC)


def _niceness() -> int:
    return os.nice(0)


async def test_cpu_steps_run_at_a_lower_priority_than_the_server():
    # The server is one thread: niced step processes leave it a core (see CpuPool).
    for nice, expected in ((7, os.nice(0) + 7), (0, os.nice(0))):
        pool = CpuPool(1, nice=nice)
        try:
            assert await pool.run(_niceness, cancelled=asyncio.Event(), grace=1) == min(19, expected)
        finally:
            pool.shutdown()


async def test_embedded_jobs_start_without_a_queue_message(kernel: Kernel, monkeypatch):
    # The in-memory broker's message round trip (build, serialise, parse) cost ten times the task
    # that runs the job; embedded kicks start the task directly.
    from taskiq import InMemoryBroker

    async def no_message(self, message):
        raise AssertionError("an embedded kick went through a taskiq message")

    monkeypatch.setattr(InMemoryBroker, "kick", no_message)
    jobs = await kernel.jobs.submit_many("test.noop", [{"n": i} for i in range(5)])
    await kernel.broker.drain()
    for job in jobs:
        assert (await wait_for_status(kernel, job.id, {SUCCEEDED})).result == {"n": jobs.index(job)}


@pytest.mark.parametrize("cancel_the_stop", [False, True])
async def test_stop_is_bounded_when_handlers_outlive_their_cancel(
    tmp_path: Path, db_url: str, monkeypatch, cancel_the_stop: bool
):
    """Handlers whose clean-up never ends must not hang the server's stop, and a cancel of the stop
    (a shutdown timeout) must go through: the old stop awaited each handler under
    `suppress(BaseException)`, so one cancel was swallowed and the next handler waited on forever."""
    from kiln.core.jobs import runner as runner_module
    from tests.core import job_handlers

    monkeypatch.setattr(runner_module, "STOP_WAIT_SECONDS", 30.0 if cancel_the_stop else 0.5)
    job_handlers.UNSTOPPABLE_RELEASE = asyncio.Event()
    kernel = Kernel(make_settings(tmp_path / "home", db_url, worker_names=["a", "b"]))
    await kernel.start("serve")
    try:
        for job in [await kernel.jobs.submit("test.unstoppable", {}) for _ in range(2)]:
            await wait_for_status(kernel, job.id, {RUNNING})
        started = time.monotonic()
        stopping = asyncio.create_task(kernel.runner.stop())
        if cancel_the_stop:
            await asyncio.sleep(0.3)
            stopping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(stopping, timeout=5)
        else:
            await asyncio.wait_for(stopping, timeout=10)
        assert time.monotonic() - started < 5
    finally:
        job_handlers.UNSTOPPABLE_RELEASE.set()
        await kernel.stop()


async def test_a_claim_in_flight_when_the_stop_begins_leaves_the_job_queued(tmp_path: Path, db_url: str, monkeypatch):
    """A job whose claim was still being written when the server began to stop is given back to
    the queue (attempt not used up), not run after the stop has cancelled the handlers it knew of:
    such a handler outlived the shutdown and was found by the event loop's close."""
    kernel = Kernel(make_settings(tmp_path / "home", db_url, worker_names=["a"]))
    await kernel.start("serve")
    try:
        store = kernel.runner._store
        real_claim = store.claim
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow_claim(items, now):
            entered.set()
            await release.wait()
            return await real_claim(items, now)

        monkeypatch.setattr(store, "claim", slow_claim)
        job = await kernel.jobs.submit("test.noop", {"n": 1})
        await asyncio.wait_for(entered.wait(), 10)
        stopping = asyncio.create_task(kernel.runner.stop())
        await asyncio.sleep(0)  # the stop has begun
        release.set()
        await asyncio.wait_for(stopping, 15)
        await asyncio.wait_for(kernel.broker.drain(), 10)
        async with kernel.db.session() as session:
            row = await session.get(Job, job.id)
            assert row is not None and (row.status, row.attempts, row.worker) == (QUEUED, 0, None)
            slot = await session.get(Worker, "a")
            assert slot is not None and (slot.status, slot.current_job_id) == ("offline", None)
    finally:
        await kernel.stop()
