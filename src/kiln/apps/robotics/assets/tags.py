"""Tags: catalog with asset counts, create, attach to and detach from assets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.assets.service import get_asset
from kiln.apps.robotics.common import Conflict, NotFound, RoboticsError, normalize_name
from kiln.apps.robotics.models import AssetTag, Tag
from kiln.apps.robotics.views import tag_view
from kiln.core.db import new_id, utcnow


async def list_tags(session: AsyncSession) -> list[dict[str, Any]]:
    counts = select(AssetTag.tag_id, func.count().label("n")).group_by(AssetTag.tag_id).subquery()
    rows = await session.execute(
        select(Tag, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.tag_id == Tag.id)
        .order_by(Tag.name, Tag.id)
    )
    return [{**tag_view(t), "asset_count": int(n)} for t, n in rows]


async def create_tag(session: AsyncSession, name: str) -> dict[str, Any]:
    display = " ".join(name.split())
    if not display:
        raise RoboticsError("tag name must not be blank")
    now = utcnow()
    tag = Tag(id=new_id(), name=display, normalized_name=normalize_name(display), created_at=now, updated_at=now)
    if await session.scalar(select(Tag.id).where(Tag.normalized_name == tag.normalized_name)):
        raise Conflict(f"tag already exists: {name}")
    session.add(tag)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"tag already exists: {name}") from None
    return {**tag_view(tag), "asset_count": 0}


async def find_tag(session: AsyncSession, ref: str) -> Tag:
    """A tag by id or by (case/whitespace-insensitive) name."""
    tag = await session.scalar(
        select(Tag).where(or_(Tag.id == ref, Tag.normalized_name == normalize_name(ref))).limit(1)
    )
    if tag is None:
        raise NotFound(f"tag not found: {ref}")
    return tag


async def attach_tag(session: AsyncSession, asset_id: str, tag_ref: str) -> None:
    asset = await get_asset(session, asset_id)
    tag = await find_tag(session, tag_ref)
    linked = await session.get(AssetTag, (asset.id, tag.id))
    if linked is not None:
        raise Conflict(f"tag already attached to asset: {tag.name} -> {asset.file_name}")
    session.add(AssetTag(asset_id=asset.id, tag_id=tag.id, created_at=utcnow()))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"tag already attached to asset: {tag.name} -> {asset.file_name}") from None


async def detach_tag(session: AsyncSession, asset_id: str, tag_ref: str) -> None:
    """Unlink; a tag left on no asset leaves the catalog too (the reference's behaviour)."""
    asset = await get_asset(session, asset_id)
    tag = await find_tag(session, tag_ref)
    gone = await session.execute(delete(AssetTag).where(AssetTag.asset_id == asset.id, AssetTag.tag_id == tag.id))
    if not gone.rowcount:
        raise NotFound(f"tag not attached to asset: {tag.name} -> {asset.file_name}")
    still_used = await session.scalar(select(func.count()).select_from(AssetTag).where(AssetTag.tag_id == tag.id))
    if not still_used:
        await session.execute(delete(Tag).where(Tag.id == tag.id))
    await session.commit()
