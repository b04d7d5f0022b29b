"""Execution history: the runs table queried with the contract's filters, counted and paged in the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.arted.errors import ArtedError
from kiln.apps.arted.models import Run
from kiln.apps.arted.pipeline.recorder import blob_prefix


def parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise ArtedError(400, "Invalid date format", details="use YYYY-MM-DD") from None


async def list_runs(
    session: AsyncSession,
    *,
    limit: int,
    offset: int,
    config: str | None,
    day: date | None,
    user_id: str | None,
    session_id: str | None,
) -> tuple[list[Run], int]:
    conditions = []
    if config:
        conditions.append(Run.config_id == config)
    if user_id:
        conditions.append(Run.user_id == user_id)
    if session_id:
        conditions.append(Run.session_id == session_id)
    if day:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        conditions += [Run.created_at >= start, Run.created_at < start + timedelta(days=1)]
    total = (await session.execute(select(func.count()).select_from(Run).where(*conditions))).scalar_one()
    rows = (
        (
            await session.execute(
                select(Run)
                .where(*conditions)
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(limit)
                .offset(offset)
            )
        )
        .scalars()
        .all()
    )
    return list(rows), int(total)


async def stats(session: AsyncSession) -> dict[str, Any]:
    runs = (await session.execute(select(func.count()).select_from(Run))).scalar_one()
    size = (await session.execute(select(func.coalesce(func.sum(Run.stored_bytes), 0)))).scalar_one()
    by_status = dict((await session.execute(select(Run.status, func.count()).group_by(Run.status))).all())
    return {
        "total_records": int(runs),
        "total_size_bytes": int(size),
        "total_size_mb": round(int(size) / 2**20, 2),
        "storage_dir": blob_prefix("").rstrip("/"),
        "by_status": by_status,
    }
