"""Dashboard rollups: summary counts and freshness, per-day trends, blockers.

Conversion status comes from the run's engine job, so a queued conversion counts as
`queued` (the reference crashed with 500 on its raw `pending`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.common import RoboticsError, iso
from kiln.apps.robotics.conversion.outputs import refresh_outputs
from kiln.apps.robotics.models import INDEXING_STATUSES, Asset, ConversionRun, OutputArtifact
from kiln.apps.robotics.views import JOB_KINDS
from kiln.core.db import utcnow
from kiln.core.jobs.models import FAILED, Job

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
KINDS = list(JOB_KINDS.values())


def _failed_at(job: Job) -> datetime:
    return job.finished_at or job.updated_at or job.created_at


async def _counts(session: AsyncSession, col: Any, *where: Any, join: Any = None) -> dict[str, int]:
    q = select(col, func.count())
    if join is not None:
        q = q.select_from(join)
    rows = await session.execute(q.where(*where).group_by(col))
    return {k: int(n) for k, n in rows}


async def summary(session: AsyncSession) -> dict[str, Any]:
    await refresh_outputs(session)
    now = utcnow()
    in_window = [
        func.coalesce(func.sum(case((Asset.registered_at >= now - timedelta(days=d), 1), else_=0)), 0)
        for d in (1, 7, 30)
    ]
    asset_count, asset_bytes, *counts = (
        await session.execute(select(func.count(), func.coalesce(func.sum(Asset.file_size), 0), *in_window))
    ).one()
    windows = {d: int(n) for d, n in zip((1, 7, 30), counts, strict=True)}
    indexing = await _counts(session, Asset.indexing_status)
    jobs = await _counts(session, Job.status, Job.kind.in_(KINDS))
    failed_jobs = await session.scalars(select(Job).where(Job.kind.in_(KINDS), Job.status == FAILED))
    failed_24h = sum(1 for j in failed_jobs if _failed_at(j) >= now - timedelta(hours=24))
    runs = await _counts(
        session, Job.status, join=ConversionRun.__table__.join(Job.__table__, Job.id == ConversionRun.job_id)
    )
    out_count, out_bytes = (
        await session.execute(select(func.count(), func.coalesce(func.sum(OutputArtifact.size_bytes), 0)))
    ).one()
    created_7d = int(
        await session.scalar(
            select(func.count()).select_from(OutputArtifact).where(OutputArtifact.created_at >= now - timedelta(days=7))
        )
        or 0
    )
    formats = await _counts(session, OutputArtifact.format)
    avail = await _counts(session, OutputArtifact.availability_status)
    availability = [{"key": k, "count": avail.pop(k, 0)} for k in ("ready", "missing", "invalid")]
    availability += [{"key": k, "count": n} for k, n in sorted(avail.items())]

    async def latest(col: Any, *where: Any) -> str | None:
        return iso(await session.scalar(select(func.max(col)).where(*where)))

    return {
        "inventory": {
            "asset_count": int(asset_count),
            "total_asset_bytes": int(asset_bytes),
            "registered_last_24h": windows[1],
            "registered_last_7d": windows[7],
            "registered_last_30d": windows[30],
        },
        "indexing": {"status_counts": {s: indexing.get(s, 0) for s in INDEXING_STATUSES}},
        "jobs": {
            "active_count": jobs.get("queued", 0) + jobs.get("running", 0),
            "failed_last_24h": failed_24h,
            "status_counts": {s: jobs.get(s, 0) for s in JOB_STATUSES},
        },
        "conversions": {"status_counts": {s: runs.get(s, 0) for s in JOB_STATUSES}},
        "outputs": {
            "output_count": int(out_count),
            "total_output_bytes": int(out_bytes),
            "outputs_created_last_7d": created_7d,
            "format_counts": [
                {"key": k, "count": n} for k, n in sorted(formats.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "availability_counts": availability,
        },
        "freshness": {
            "computed_at": iso(now),
            "latest_asset_registration_at": await latest(Asset.registered_at),
            "latest_asset_indexed_at": await latest(Asset.last_indexed_at),
            "latest_job_update_at": await latest(Job.updated_at, Job.kind.in_(KINDS)),
            "latest_conversion_update_at": await latest(Job.updated_at, Job.kind == JOB_KINDS["convert"]),
            "latest_output_update_at": await latest(OutputArtifact.updated_at),
        },
    }


def parse_days(raw: str | None) -> int:
    if raw is None or not raw.strip():
        return 7
    try:
        days = int(raw)
    except ValueError:
        raise RoboticsError(f"days must be an integer between 1 and 90, got {raw!r}") from None
    if not 1 <= days <= 90:
        raise RoboticsError(f"days must be between 1 and 90, got {days}")
    return days


def _buckets(days: int, today: date, stamps: list[datetime]) -> list[dict[str, Any]]:
    first = today - timedelta(days=days - 1)
    counts = dict.fromkeys((first + timedelta(days=i) for i in range(days)), 0)
    for ts in stamps:
        d = ts.date()
        if d in counts:
            counts[d] += 1
    return [{"date": d.isoformat(), "count": n} for d, n in counts.items()]


async def trends(session: AsyncSession, days: int) -> dict[str, Any]:
    await refresh_outputs(session)
    now = utcnow()
    today = now.date()
    since = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), tzinfo=now.tzinfo)

    async def stamps(col: Any, *where: Any, join: Any = None) -> list[datetime]:
        q = select(col)
        if join is not None:
            q = q.select_from(join)
        return [t for t in await session.scalars(q.where(col >= since, *where)) if t is not None]

    failed = await session.scalars(select(Job).where(Job.kind.in_(KINDS), Job.status == FAILED))
    runs_jobs = ConversionRun.__table__.join(Job.__table__, Job.id == ConversionRun.job_id)
    return {
        "days": days,
        "registrations_by_day": _buckets(days, today, await stamps(Asset.registered_at)),
        "job_failures_by_day": _buckets(days, today, [_failed_at(j) for j in failed]),
        "conversions_by_day": _buckets(days, today, await stamps(ConversionRun.created_at)),
        "conversion_failures_by_day": _buckets(
            days,
            today,
            await stamps(func.coalesce(Job.finished_at, Job.updated_at), Job.status == FAILED, join=runs_jobs),
        ),
        "outputs_created_by_day": _buckets(days, today, await stamps(OutputArtifact.created_at)),
    }


async def blockers(session: AsyncSession) -> dict[str, int]:
    await refresh_outputs(session)
    indexing = await _counts(session, Asset.indexing_status)
    jobs = await _counts(session, Job.status, Job.kind.in_(KINDS))
    runs = await _counts(
        session, Job.status, join=ConversionRun.__table__.join(Job.__table__, Job.id == ConversionRun.job_id)
    )
    avail = await _counts(session, OutputArtifact.availability_status)
    return {
        "pending_assets": indexing.get("pending", 0),
        "failed_assets": indexing.get("failed", 0),
        "failed_jobs": jobs.get("failed", 0),
        "failed_conversions": runs.get("failed", 0),
        "missing_outputs": avail.get("missing", 0),
        "invalid_outputs": avail.get("invalid", 0),
    }
