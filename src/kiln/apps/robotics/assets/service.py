"""Assets out: one asset, its detail (metadata, tags, jobs, conversions), listing with server-side
filters. Registration, upload and scans are in `registration.py`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.common import NotFound, RoboticsError, normalize_name, parse_iso
from kiln.apps.robotics.models import INDEXING_STATUSES, Asset, AssetMetadata, AssetTag, ConversionRun, Tag
from kiln.apps.robotics.views import asset_list_item, asset_summary, conversion_summary, metadata_view, tag_view
from kiln.core.jobs.models import Job
from kiln.core.params import QUERY_INT_MAX


async def get_asset(session: AsyncSession, asset_id: str) -> Asset:
    asset = await session.get(Asset, asset_id)
    if asset is None:
        raise NotFound(f"asset not found: {asset_id}")
    return asset


async def tags_of(session: AsyncSession, asset_ids: list[str]) -> dict[str, list[Tag]]:
    out: dict[str, list[Tag]] = {a: [] for a in asset_ids}
    if not asset_ids:
        return out
    rows = await session.execute(
        select(AssetTag.asset_id, Tag)
        .join(Tag, Tag.id == AssetTag.tag_id)
        .where(AssetTag.asset_id.in_(asset_ids))
        .order_by(Tag.name)
    )
    for asset_id, tag in rows:
        out[asset_id].append(tag)
    return out


async def asset_detail(session: AsyncSession, asset_id: str) -> dict[str, Any]:
    from kiln.apps.robotics.models import JobAsset
    from kiln.apps.robotics.views import job_view

    asset = await get_asset(session, asset_id)
    meta = await session.get(AssetMetadata, asset_id, populate_existing=True)
    tags = (await tags_of(session, [asset_id]))[asset_id]
    jobs = list(
        await session.scalars(
            select(Job)
            .join(JobAsset, JobAsset.job_id == Job.id)
            .where(JobAsset.asset_id == asset_id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(10)
            .execution_options(populate_existing=True)
        )
    )
    runs = (
        await session.execute(
            select(ConversionRun, Job)
            .join(JobAsset, JobAsset.job_id == ConversionRun.job_id)
            .outerjoin(Job, Job.id == ConversionRun.job_id)
            .where(JobAsset.asset_id == asset_id)
            .order_by(ConversionRun.created_at.desc(), ConversionRun.id.desc())
            .limit(10)
        )
    ).all()
    return {
        "asset": asset_summary(asset),
        "metadata": metadata_view(meta),
        "tags": [tag_view(t) for t in tags],
        "related_jobs": [job_view(j) for j in jobs],
        "conversions": [conversion_summary(r, j) for r, j in runs],
    }


# ------------------------------------------------------------------------------ listing
@dataclass
class AssetFilters:
    search: str | None = None
    tag: str | None = None
    type: str | None = None
    status: str | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    start_after: datetime | None = None
    start_before: datetime | None = None
    min_size: int | None = None
    max_size: int | None = None
    registered_after: datetime | None = None
    registered_before: datetime | None = None
    limit: int | None = None
    offset: int = 0


def _number(params: dict[str, str], key: str, kind: type = float) -> Any:
    raw = params.get(key)
    if raw is None or not raw.strip():
        return None
    try:
        value = kind(raw.strip())
    except ValueError:
        word = "an integer" if kind is int else "a number"
        raise RoboticsError(f"{key} must be {word} >= 0, got {raw!r}") from None
    if value < 0 or value != value:  # negative or NaN
        raise RoboticsError(f"{key} must be >= 0, got {raw!r}")
    if not value <= QUERY_INT_MAX:  # beyond what a database column holds (inf included)
        raise RoboticsError(f"{key} must be <= {QUERY_INT_MAX}, got {raw!r}")
    return value


def parse_asset_filters(params: dict[str, str]) -> AssetFilters:
    """Query string -> filters; blank values are ignored, bad ones answer 422 naming the field."""

    def text(key: str) -> str | None:
        v = params.get(key)
        return v.strip() if v and v.strip() else None

    def when(key: str) -> datetime | None:
        v = text(key)
        return parse_iso(v, key) if v else None

    f = AssetFilters(
        search=text("search"),
        tag=text("tag"),
        type=(text("type") or "").lower() or None,
        status=(text("status") or "").lower() or None,
        min_duration=_number(params, "min_duration"),
        max_duration=_number(params, "max_duration"),
        start_after=when("start_after"),
        start_before=when("start_before"),
        min_size=_number(params, "min_size", int),
        max_size=_number(params, "max_size", int),
        registered_after=when("registered_after"),
        registered_before=when("registered_before"),
        limit=_number(params, "limit", int),
        offset=_number(params, "offset", int) or 0,
    )
    if f.status and f.status not in INDEXING_STATUSES:
        raise RoboticsError(f"status must be one of {', '.join(INDEXING_STATUSES)}, got {f.status!r}")
    for lo, hi, name in (
        (f.min_duration, f.max_duration, "min_duration"),
        (f.min_size, f.max_size, "min_size"),
        (f.start_after, f.start_before, "start_after"),
        (f.registered_after, f.registered_before, "registered_after"),
    ):
        if lo is not None and hi is not None and lo > hi:
            other = name.replace("min", "max").replace("after", "before")
            raise RoboticsError(f"{name} must be <= {other}")
    if f.limit is not None and not 1 <= f.limit <= 1000:
        raise RoboticsError("limit must be between 1 and 1000")
    return f


async def list_assets(session: AsyncSession, f: AssetFilters) -> list[dict[str, Any]]:
    q = select(Asset)
    if f.search:
        haystack = func.lower(Asset.file_name + " " + Asset.file_type + " " + Asset.file_path)
        q = q.where(haystack.contains(f.search.lower(), autoescape=True))
    if f.type:
        q = q.where(Asset.file_type == f.type)
    if f.status:
        q = q.where(Asset.indexing_status == f.status)
    if f.tag:
        # an unknown tag matches nothing (the reference answered 500)
        tag_ids = select(Tag.id).where(or_(Tag.id == f.tag, Tag.normalized_name == normalize_name(f.tag)))
        q = q.where(exists().where(AssetTag.asset_id == Asset.id, AssetTag.tag_id.in_(tag_ids)))
    meta_conditions = []
    if f.min_duration is not None:
        meta_conditions.append(AssetMetadata.duration >= f.min_duration)
    if f.max_duration is not None:
        meta_conditions.append(AssetMetadata.duration <= f.max_duration)
    if f.start_after is not None:
        meta_conditions.append(AssetMetadata.start_time >= f.start_after)
    if f.start_before is not None:
        meta_conditions.append(AssetMetadata.start_time <= f.start_before)
    if meta_conditions:
        q = q.where(exists().where(AssetMetadata.asset_id == Asset.id, and_(*meta_conditions)))
    if f.min_size is not None:
        q = q.where(Asset.file_size >= f.min_size)
    if f.max_size is not None:
        q = q.where(Asset.file_size <= f.max_size)
    if f.registered_after is not None:
        q = q.where(Asset.registered_at >= f.registered_after)
    if f.registered_before is not None:
        q = q.where(Asset.registered_at <= f.registered_before)
    q = q.order_by(Asset.registered_at.desc(), Asset.id.desc()).offset(f.offset)
    if f.limit is not None:
        q = q.limit(f.limit)
    assets = list(await session.scalars(q))
    tags = await tags_of(session, [a.id for a in assets])
    return [asset_list_item(a, tags[a.id]) for a in assets]
