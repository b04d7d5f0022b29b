"""Robotics jobs on the engine: submit index jobs, list/get/cancel/retry, wait for completion."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.assets import service as assets_service
from kiln.apps.robotics.common import Conflict, NotFound, RoboticsError
from kiln.apps.robotics.config import Execution, RoboticsSettings
from kiln.apps.robotics.models import FAILED, PENDING, Asset, JobAsset
from kiln.apps.robotics.views import JOB_KINDS, asset_summary, job_view
from kiln.core.jobs.models import FINISHED, STATUSES, SUCCEEDED, Job
from kiln.core.jobs.service import JOB_UPDATED, JobError, JobNotFound, JobService
from kiln.core.kernel import Kernel

INDEX_KIND, CONVERT_KIND = "robotics.index", "robotics.convert"


async def create_index_jobs(
    session: AsyncSession, jobs: JobService, asset_ids: list[str], trigger: str, execution: Execution = "background"
) -> list[Job]:
    """Add one index job per asset to the caller's transaction (kick after commit)."""
    created = []
    for asset_id in asset_ids:
        job = await jobs.create(
            session,
            INDEX_KIND,
            {
                "asset_id": asset_id,
                "target_asset_ids": [asset_id],
                "config": {"execution": execution, "trigger": trigger},
            },
            max_attempts=1,  # a damaged recording does not heal by retrying; POST /jobs/{id}/retry can
        )
        session.add(JobAsset(job_id=job.id, asset_id=asset_id, position=0))
        created.append(job)
    return created


async def wait_for_jobs(kernel: Kernel, job_ids: list[str], timeout: float) -> dict[str, Job]:
    """Wait until every job is finished or `timeout` passes; returns the latest rows.

    Listens to `job.updated` events and re-reads the rows now and then, so a missed event
    (a slow subscriber, another process) only delays the answer.
    """
    pending = set(job_ids)
    latest: dict[str, Job] = {}
    deadline = time.monotonic() + timeout
    async with kernel.events.subscribe(JOB_UPDATED) as events:
        while True:
            async with kernel.db.session() as s:
                rows = await s.scalars(select(Job).where(Job.id.in_(list(pending or job_ids))))
                for job in rows:
                    latest[job.id] = job
                    if job.status in FINISHED:
                        pending.discard(job.id)
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                return latest
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    async for _topic, data in events:
                        if data.get("id") in pending and data.get("status") in FINISHED:
                            break


async def index_asset(session: AsyncSession, kernel: Kernel, cfg: RoboticsSettings, asset_id: str) -> dict[str, Any]:
    """Index one asset through a job and answer its detail once the job is done.

    A failed index answers 422 with the job's error (asset `failed`, error stored). When
    the wait runs out the detail still says `indexing` and the job carries on.
    """
    await assets_service.get_asset(session, asset_id)
    (job,) = await create_index_jobs(session, kernel.jobs, [asset_id], "index_asset", cfg.execution)
    await session.commit()
    await kernel.jobs.kick(job.id)
    done = (await wait_for_jobs(kernel, [job.id], cfg.wait_seconds(cfg.index_wait_seconds))).get(job.id, job)
    if done.status == "failed":
        raise RoboticsError(done.error or "indexing failed")
    if done.status == "cancelled":
        raise Conflict(f"indexing was cancelled: job {job.id}")
    session.expire_all()
    return await assets_service.asset_detail(session, asset_id)


async def reindex_all(session: AsyncSession, kernel: Kernel, cfg: RoboticsSettings) -> dict[str, Any]:
    """Index every pending, failed or never-indexed asset (oldest first), one job each."""
    assets = list(
        await session.scalars(
            select(Asset)
            .where(or_(Asset.indexing_status.in_([PENDING, FAILED]), Asset.last_indexed_at.is_(None)))
            .order_by(Asset.registered_at, Asset.id)
        )
    )
    created = await create_index_jobs(session, kernel.jobs, [a.id for a in assets], "reindex_all", cfg.execution)
    pairs = [(a.id, j.id) for a, j in zip(assets, created, strict=True)]
    await session.commit()
    await kernel.jobs.kick([j for _a, j in pairs])
    finished = await wait_for_jobs(kernel, [j for _a, j in pairs], cfg.wait_seconds(cfg.reindex_wait_seconds))
    session.expire_all()
    fresh = {a.id: a for a in await session.scalars(select(Asset).where(Asset.id.in_([a for a, _j in pairs])))}
    indexed, failed, waiting = [], [], []
    for asset_id, job_id in pairs:
        status = finished[job_id].status if job_id in finished else "queued"
        bucket = indexed if status == SUCCEEDED else failed if status in ("failed", "cancelled") else waiting
        if asset_id in fresh:
            bucket.append(asset_summary(fresh[asset_id]))
    return {
        "indexed_assets": indexed,
        "failed_assets": failed,
        "total_requested": len(pairs),
        "pending_assets": waiting,
    }


def _check_filters(type_: str | None, status: str | None) -> tuple[str | None, str | None]:
    kind = None
    if type_:
        kind = JOB_KINDS.get(type_.strip().lower())
        if kind is None:
            raise RoboticsError(f"type must be one of {', '.join(JOB_KINDS)}, got {type_!r}")
    if status:
        status = status.strip().lower()
        if status == "pending":  # the reference's own word for queued
            status = "queued"
        if status not in STATUSES:
            raise RoboticsError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return kind, status or None


async def list_jobs(
    session: AsyncSession, type_: str | None, status: str | None, limit: int | None, offset: int
) -> list[dict[str, Any]]:
    kind, status = _check_filters(type_, status)
    q = select(Job).where(Job.kind.in_([kind] if kind else list(JOB_KINDS.values())))
    if status:
        q = q.where(Job.status == status)
    q = q.order_by(Job.created_at.desc(), Job.id.desc()).offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [job_view(j) for j in await session.scalars(q)]


async def count_jobs(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count()).select_from(Job).where(Job.kind.in_(list(JOB_KINDS.values())))) or 0
    )


async def get_job(session: AsyncSession, job_id: str) -> Job:
    job = await session.get(Job, job_id, populate_existing=True)
    if job is None or job.kind not in JOB_KINDS.values():
        raise NotFound(f"job not found: {job_id}")
    return job


async def cancel_job(session: AsyncSession, jobs: JobService, job_id: str) -> dict[str, Any]:
    return await _act(session, jobs.cancel, job_id)


async def retry_job(session: AsyncSession, jobs: JobService, job_id: str) -> dict[str, Any]:
    return await _act(session, jobs.retry, job_id)


async def _act(session: AsyncSession, action: Callable[[str], Awaitable[Job]], job_id: str) -> dict[str, Any]:
    """Cancel or retry one robotics job: 404 for other surfaces' jobs, 409 when not allowed now."""
    await get_job(session, job_id)
    try:
        job = await action(job_id)
    except JobNotFound:
        raise NotFound(f"job not found: {job_id}") from None
    except JobError as exc:
        raise Conflict(str(exc)) from None
    return job_view(job)
