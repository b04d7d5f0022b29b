"""JobService: submit, get, list, cancel and retry durable jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from kiln.core.db import Database, new_id, utcnow
from kiln.core.events import EventBus
from kiln.core.jobs.models import CANCELLED, FAILED, QUEUED, RUNNING, STATUSES, Job, job_to_dict
from kiln.core.jobs.registry import get_handler

JOB_UPDATED = "job.updated"
JOB_CANCEL = "job.cancel"


class JobError(ValueError):
    """A request about a job that cannot be honoured (unknown kind, wrong state)."""


class JobNotFound(LookupError):
    pass


Kicker = Callable[[Sequence[str]], Awaitable[None]]


JOBS = Job.__table__
INSERT_JOB = insert(JOBS)  # built once: its cache key is computed once, not per job
# What a new job's row holds; written with a Core INSERT (an ORM flush costs several times more).
_NEW_JOB_COLUMNS = (
    "id",
    "kind",
    "surface",
    "status",
    "progress",
    "attempts",
    "max_attempts",
    "payload",
    "owner_id",
    "created_at",
    "updated_at",
)


def _row(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in _NEW_JOB_COLUMNS}


class JobService:
    def __init__(self, db: Database, events: EventBus, kick: Kicker, *, default_max_attempts: int = 3):
        self.db = db
        self.events = events
        self._kick = kick
        self.default_max_attempts = default_max_attempts

    def _new_job(self, kind: str, payload: dict[str, Any], owner_id: str | None, max_attempts: int | None) -> Job:
        spec = get_handler(kind)
        if spec is None:
            raise JobError(f"no handler is registered for job kind {kind!r}")
        now = utcnow()
        return Job(
            id=new_id(),
            kind=kind,
            surface=spec.surface,
            status=QUEUED,
            progress=0.0,
            attempts=0,
            max_attempts=max_attempts or spec.max_attempts or self.default_max_attempts,
            payload=payload,
            owner_id=owner_id,
            created_at=now,
            updated_at=now,
        )

    async def create(
        self,
        session: AsyncSession | AsyncConnection,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        owner_id: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        """Add a job to the caller's transaction; call `kick(job.id)` after committing.

        The row is inserted at once (rows that refer to it may follow in the same transaction);
        the returned `Job` is not attached to the session."""
        job = self._new_job(kind, payload or {}, owner_id, max_attempts)
        await session.execute(INSERT_JOB, [_row(job)])
        return job

    async def submit(
        self,
        kind: str,
        payload: dict[str, Any] | None = None,
        *,
        owner_id: str | None = None,
        max_attempts: int | None = None,
    ) -> Job:
        (job,) = await self.submit_many(kind, [payload or {}], owner_id=owner_id, max_attempts=max_attempts)
        return job

    async def submit_many(
        self,
        kind: str,
        payloads: Sequence[dict[str, Any]],
        *,
        owner_id: str | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Insert many jobs in one transaction, then kick them all."""
        jobs = [self._new_job(kind, p, owner_id, max_attempts) for p in payloads]
        if not jobs:
            return jobs
        async with self.db.engine.begin() as conn:
            await conn.execute(INSERT_JOB, [_row(job) for job in jobs])
        await self.kick([job.id for job in jobs])
        for job in jobs:
            await self.events.publish(JOB_UPDATED, job_to_dict(job))
        return jobs

    async def kick(self, job_ids: str | Sequence[str]) -> None:
        await self._kick([job_ids] if isinstance(job_ids, str) else list(job_ids))

    async def get(self, job_id: str) -> Job | None:
        async with self.db.session() as session:
            return await session.get(Job, job_id)

    async def list(
        self,
        *,
        kind: str | Sequence[str] | None = None,
        surface: str | None = None,
        status: str | Sequence[str] | None = None,
        owner_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Job], int]:
        """Newest first, with the total count of the filtered set."""
        conditions = []
        if kind:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            conditions.append(Job.kind.in_(kinds))
        if surface:
            conditions.append(Job.surface == surface)
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = sorted(set(statuses) - set(STATUSES))
            if unknown:
                raise JobError(f"unknown job status {unknown}; use one of {list(STATUSES)}")
            conditions.append(Job.status.in_(statuses))
        if owner_id:
            conditions.append(Job.owner_id == owner_id)
        async with self.db.session() as session:
            total = await session.scalar(select(func.count()).select_from(Job).where(*conditions))
            rows = await session.scalars(
                select(Job)
                .where(*conditions)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return list(rows), int(total or 0)

    async def cancel(self, job_id: str) -> Job:
        """A queued job is cancelled at once; a running one is asked to stop (it stops within ~2 s)."""
        now = utcnow()
        async with self.db.session() as session:
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == QUEUED)
                .values(status=CANCELLED, cancel_requested_at=now, finished_at=now, updated_at=now)
                .returning(Job.id)
            )
            cancelled_now = result.first() is not None
            if not cancelled_now:
                await session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == RUNNING, Job.cancel_requested_at.is_(None))
                    .values(cancel_requested_at=now, updated_at=now)
                )
            await session.commit()
            job = await session.get(Job, job_id, populate_existing=True)
        if job is None:
            raise JobNotFound(job_id)
        if job.status == RUNNING:
            await self.events.publish(JOB_CANCEL, {"id": job.id})
        elif not cancelled_now:
            raise JobError(f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled")
        await self.events.publish(JOB_UPDATED, job_to_dict(job))
        return job

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; its attempts count on, and one more is allowed."""
        now = utcnow()
        async with self.db.session() as session:
            result = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_([FAILED, CANCELLED]))
                .values(
                    status=QUEUED,
                    max_attempts=func.max(Job.max_attempts, Job.attempts + 1)
                    if self.db.is_sqlite
                    else func.greatest(Job.max_attempts, Job.attempts + 1),
                    error=None,
                    result=None,
                    progress=0.0,
                    progress_message=None,
                    cancel_requested_at=None,
                    run_after=None,
                    finished_at=None,
                    worker=None,
                    updated_at=now,
                )
                .returning(Job.id)
            )
            retried = result.first() is not None
            await session.commit()
            job = await session.get(Job, job_id, populate_existing=True)
        if job is None:
            raise JobNotFound(job_id)
        if not retried:
            raise JobError(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")
        await self.kick([job.id])
        await self.events.publish(JOB_UPDATED, job_to_dict(job))
        return job
