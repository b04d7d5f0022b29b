"""The runner's batched SQL: claims take each job once; outcomes are fenced by attempt."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

import tests.core.job_handlers  # noqa: F401
from kiln.core.db import utcnow
from kiln.core.jobs import FAILED, QUEUED, RUNNING, SUCCEEDED, Job, Worker
from kiln.core.jobs.store import JobStore, Outcome
from kiln.core.kernel import Kernel


async def _queued(kernel: Kernel, n: int) -> list[str]:
    async with kernel.db.session() as session:
        jobs = [await kernel.jobs.create(session, "test.noop", {"n": i}) for i in range(n)]
        await session.commit()
    return [job.id for job in jobs]


async def test_claim_takes_each_job_once_and_fences_outcomes(tmp_path, db_url):
    from tests.conftest import make_settings

    kernel = Kernel(make_settings(tmp_path / "home", db_url))  # not started: nothing else claims
    store = JobStore(kernel.db)
    try:
        ids = await _queued(kernel, 3)
        claimed = await store.claim([(ids[0], "s1"), (ids[1], "s2")], utcnow())
        assert set(claimed) == {ids[0], ids[1]}
        assert claimed[ids[0]].status == RUNNING and claimed[ids[0]].worker == "s1" and claimed[ids[0]].attempts == 1
        again = await store.claim([(ids[0], "s3"), (ids[2], "s3")], utcnow())
        assert again.keys() == {ids[2]}

        # ids[1] was recovered and re-run elsewhere (attempt 2): this worker's late answer must not land.
        async with kernel.db.session() as session:
            await session.execute(update(Job).where(Job.id == ids[1]).values(attempts=2))
            await session.commit()
        first, second = claimed[ids[0]], claimed[ids[1]]
        for job, status in ((first, SUCCEEDED), (second, FAILED)):
            job.status, job.result, job.progress, job.finished_at = status, {"ok": True}, 1.0, utcnow()
        written = await store.write_outcomes([Outcome(first, 1, "s1"), Outcome(second, 1, "s2")], utcnow())
        assert written == {ids[0]}
        rows = {job.id: job for job in (await kernel.jobs.list(limit=10))[0]}
        assert rows[ids[0]].status == SUCCEEDED and rows[ids[0]].result == {"ok": True}
        assert rows[ids[1]].status == RUNNING and rows[ids[1]].result is None
        assert rows[ids[2]].status == RUNNING
        assert QUEUED not in {job.status for job in rows.values()}
    finally:
        await kernel.db.dispose()


async def test_worker_rows_follow_claims_and_releases(tmp_path, db_url):
    """Each slot of a batch shows the job it took, and only jobs actually taken mark a slot busy;
    a release frees every slot of the batch and counts its job."""
    from tests.conftest import make_settings

    kernel = Kernel(make_settings(tmp_path / "home", db_url))
    store = JobStore(kernel.db)
    try:
        ids = await _queued(kernel, 3)
        async with kernel.db.session() as session:
            session.add_all(Worker(name=n, status="idle", jobs_done=0, jobs_done_today=0) for n in ("a", "b", "c"))
            await session.execute(update(Job).where(Job.id == ids[2]).values(run_after=utcnow() + timedelta(hours=1)))
            await session.commit()
        now = utcnow()
        claimed = await store.claim([(ids[0], "a"), (ids[1], "b"), (ids[2], "c")], now)
        assert {i: job.worker for i, job in claimed.items()} == {ids[0]: "a", ids[1]: "b"}  # ids[2] is not due
        async with kernel.db.session() as session:  # stored as every other timestamp is: it reads back equal
            assert await session.scalar(select(Worker.heartbeat_at).where(Worker.name == "a")) == now
        assert await _workers(kernel) == {"a": ("busy", ids[0], 0), "b": ("busy", ids[1], 0), "c": ("idle", None, 0)}

        for job in claimed.values():
            job.status, job.finished_at = SUCCEEDED, utcnow()
        outcomes = [Outcome(claimed[ids[0]], 1, "a"), Outcome(claimed[ids[1]], 1, "b")]
        assert await store.write_outcomes(outcomes, utcnow()) == {ids[0], ids[1]}
        assert await _workers(kernel) == {"a": ("idle", None, 1), "b": ("idle", None, 1), "c": ("idle", None, 0)}
    finally:
        await kernel.db.dispose()


async def test_a_slot_is_released_only_while_it_names_the_job(tmp_path, db_url):
    """An outcome written after the slot was already released (its handler completed the job in
    its own transaction, then raised) or handed to another job does not release it again."""
    from tests.conftest import make_settings

    kernel = Kernel(make_settings(tmp_path / "home", db_url))
    store = JobStore(kernel.db)
    try:
        ids = await _queued(kernel, 2)
        async with kernel.db.session() as session:
            session.add_all(Worker(name=n, status="idle", jobs_done=0, jobs_done_today=0) for n in ("a", "b"))
            await session.commit()
        claimed = await store.claim([(ids[0], "a"), (ids[1], "b")], utcnow())
        async with kernel.db.engine.begin() as conn:
            assert await store.succeed_in(conn, ids[0], 1, "a", {"done": True}, utcnow())
        assert await _workers(kernel) == {"a": ("idle", None, 1), "b": ("busy", ids[1], 0)}
        async with kernel.db.session() as session:  # slot b now shows another job
            await session.execute(update(Worker).where(Worker.name == "b").values(current_job_id=ids[0]))
            await session.commit()
        for job in claimed.values():
            job.status, job.finished_at = FAILED, utcnow()
        outcomes = [Outcome(claimed[ids[0]], 1, "a"), Outcome(claimed[ids[1]], 1, "b")]
        assert await store.write_outcomes(outcomes, utcnow()) == {ids[1]}  # ids[0] had ended already
        assert await _workers(kernel) == {"a": ("idle", None, 1), "b": ("busy", ids[0], 0)}
    finally:
        await kernel.db.dispose()


async def _workers(kernel: Kernel) -> dict[str, tuple[str, str | None, int]]:
    async with kernel.db.session() as session:
        rows = await session.scalars(select(Worker))
        return {w.name: (w.status, w.current_job_id, w.jobs_done) for w in rows}
