"""`JobContext.complete_in`: a handler ends its job SUCCEEDED, and frees its slot, inside its own
last transaction, so that commit carries the job's end and the runner writes no outcome of its
own. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, func, select

import tests.core.job_handlers  # noqa: F401  (registers the test handlers)
from kiln.core.db import utcnow
from kiln.core.jobs import FAILED, SUCCEEDED, Job, Worker
from kiln.core.jobs.store import JobStore
from kiln.core.kernel import Kernel
from tests.core.test_jobs import wait_for_status


class _Transactions:
    """The statements of each committed transaction, as the engine ran them."""

    def __init__(self, kernel: Kernel) -> None:
        self.engine = kernel.db.engine.sync_engine
        self.open: dict[int, list[str]] = {}
        self.committed: list[list[str]] = []
        self.all: list[str] = []  # autocommitted ones too (the engine's own on PostgreSQL)

    def __enter__(self) -> _Transactions:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)

    def _statement(self, conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        text = f"{' '.join(statement.split())} {params!r}"
        self.open.setdefault(id(conn), []).append(text)
        self.all.append(text)

    def _commit(self, conn: Any) -> None:
        self.committed.append(self.open.pop(id(conn), []))

    def with_statement(self, *parts: str) -> list[list[str]]:
        return [t for t in self.committed if any(all(p in s for p in parts) for s in t)]


async def _jobs_done(kernel: Kernel) -> int:
    async with kernel.db.session() as session:
        return int(await session.scalar(select(func.coalesce(func.sum(Worker.jobs_done), 0))))


async def _announced(events: Any, job_id: str, status: str) -> None:
    while True:
        _topic, data = await asyncio.wait_for(events.queue.get(), 10)
        if data["id"] == job_id and data["status"] == status:
            return


async def test_the_handlers_commit_carries_the_jobs_end(kernel: Kernel):
    with _Transactions(kernel) as seen:
        async with kernel.events.subscribe("job.updated") as events:
            job = await kernel.jobs.submit("test.complete_in", {"n": 7})
            await _announced(events, job.id, SUCCEEDED)
        done = await wait_for_status(kernel, job.id, {SUCCEEDED})
    assert done.result == {"n": 7} and done.progress == 1.0 and done.error is None
    assert done.finished_at is not None and done.progress_message == "handler wrote"
    (handlers,) = seen.with_statement("handler wrote")
    # The job's outcome and its slot's release are in the handler's transaction ...
    assert any(s.startswith("UPDATE jobs SET status") and "succeeded" in s for s in handlers)
    assert any(s.startswith("UPDATE workers SET status") for s in handlers)
    # ... and the runner wrote none of its own (SQLite: an UPDATE; PostgreSQL: a CTE over arrays).
    outcomes = [s for s in seen.all if job.id in s and (s.startswith("UPDATE jobs SET status=") or "WITH v AS" in s)]
    assert len(outcomes) == 1 and outcomes[0] in handlers
    assert await _jobs_done(kernel) == 1


async def test_a_handler_raising_after_its_commit_stays_succeeded_and_counts_once(kernel: Kernel):
    job = await kernel.jobs.submit("test.complete_in", {"n": 1, "raise_after": True})
    done = await wait_for_status(kernel, job.id, {SUCCEEDED, FAILED})
    await asyncio.sleep(0.3)  # the runner's own (fenced) outcome write has happened by now
    done = await wait_for_status(kernel, job.id, {SUCCEEDED, FAILED})
    assert done.status == SUCCEEDED and done.result == {"n": 1} and done.error is None
    assert await _jobs_done(kernel) == 1  # released in the handler's commit, not again by the runner


async def test_a_rolled_back_completion_leaves_the_outcome_to_the_runner(kernel: Kernel):
    job = await kernel.jobs.submit("test.complete_in", {"n": 2, "roll_back": True})
    done = await wait_for_status(kernel, job.id, {SUCCEEDED, FAILED})
    assert done.status == FAILED and done.error == "rolled back after completing"
    assert done.progress_message != "handler wrote" and done.result is None
    assert await _jobs_done(kernel) == 1
    async with kernel.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Worker).where(Worker.status == "busy")) == 0


async def test_complete_in_is_fenced_by_attempt(kernel: Kernel):
    """A late completion of an attempt that lost its job writes nothing and frees no slot."""
    job = await kernel.jobs.submit("test.sleep", {"seconds": 0.4})
    running = await wait_for_status(kernel, job.id, {"running"})
    async with kernel.db.engine.begin() as conn:
        store = JobStore(kernel.db)
        assert not await store.succeed_in(conn, job.id, running.attempts + 1, running.worker, {"late": 1}, utcnow())
    async with kernel.db.session() as session:
        row = await session.get(Job, job.id)
        slot = await session.get(Worker, running.worker)
    assert row.status == "running" and row.result is None
    assert slot.status == "busy" and slot.current_job_id == job.id
    await wait_for_status(kernel, job.id, {SUCCEEDED})
