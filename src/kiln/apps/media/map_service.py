"""Map points and grid statistics, aggregated in SQL.

Grid cells are keyed by floor(lat / r), floor(lng / r) (the south-west corner, as the
reference); density is reported per km² with the cos(latitude) correction, not per square
degree. Confidence is 0..1 in the database; the router converts to the contract's percent.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.models import MediaDetection, MediaItem

KM_PER_DEGREE = 111.32
EDGE_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class BBox:
    min_lat: float
    max_lat: float
    min_lng: float
    max_lng: float


def _bbox_filter(bbox: BBox | None) -> list[Any]:
    if bbox is None:
        return []
    return [MediaItem.lat.between(bbox.min_lat, bbox.max_lat), MediaItem.lng.between(bbox.min_lng, bbox.max_lng)]


async def points(
    session: AsyncSession, user_id: str, *, bbox: BBox | None, has_trash: bool | None,
    min_confidence: float | None, limit: int, offset: int,
) -> tuple[list[MediaItem], dict[str, list[MediaDetection]], int]:
    where = [MediaItem.user_id == user_id, MediaItem.lat.is_not(None), MediaItem.lng.is_not(None),
             *_bbox_filter(bbox)]
    if has_trash is not None:
        where.append(MediaItem.has_trash.is_(has_trash))
    if min_confidence:
        where.append(MediaItem.confidence >= min_confidence)
    total = await session.scalar(select(func.count()).select_from(MediaItem).where(*where))
    items = list(await session.scalars(select(MediaItem).where(*where)
                                       .order_by(MediaItem.created_at.desc(), MediaItem.id)
                                       .offset(offset).limit(limit)))
    found: dict[str, list[MediaDetection]] = {i.id: [] for i in items}
    if items:
        rows = await session.scalars(select(MediaDetection).where(MediaDetection.media_id.in_(list(found)))
                                     .order_by(MediaDetection.confidence.desc()))
        for d in rows:
            found[d.media_id].append(d)
    return items, found, int(total or 0)


def _floor(expr: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return cast(func.floor(expr), Integer)
    # SQLite may lack floor(); CAST truncates toward zero, so step down for negative non-integers.
    truncated = cast(expr, Integer)
    return case((and_(expr < 0, truncated != expr), truncated - 1), else_=truncated)


async def grid_stats(session: AsyncSession, user_id: str, bbox: BBox, resolution: float) -> list[dict[str, Any]]:
    dialect = session.bind.dialect.name
    # The epsilon keeps a point on a cell edge in that cell: 19.9 / 0.01 is 1989.9999999999998.
    ci = _floor(MediaItem.lat / resolution + EDGE_EPSILON, dialect).label("ci")
    cj = _floor(MediaItem.lng / resolution + EDGE_EPSILON, dialect).label("cj")
    # `has_trash = true`, not `IS true`: only equality lets PostgreSQL range-scan the covering
    # index (user_id, has_trash, lat, lng, confidence, id), so no table row is read.
    where = [MediaItem.user_id == user_id, MediaItem.has_trash == true(), MediaItem.lat.is_not(None),
             MediaItem.lng.is_not(None), *_bbox_filter(bbox)]
    cells = (await session.execute(
        select(ci, cj, func.count().label("n"), func.avg(func.coalesce(MediaItem.confidence, 0.0)))
        .where(*where).group_by(ci, cj).order_by(ci, cj)
    )).all()

    per_label = (select(ci, cj, MediaDetection.label.label("label"), func.count().label("n"))
                 .join(MediaDetection, MediaDetection.media_id == MediaItem.id)
                 .where(*where).group_by(ci, cj, MediaDetection.label).subquery())
    rank = func.row_number().over(partition_by=(per_label.c.ci, per_label.c.cj),
                                  order_by=(per_label.c.n.desc(), per_label.c.label.asc())).label("rank")
    ranked = select(per_label.c.ci, per_label.c.cj, per_label.c.label, rank).subquery()
    dominant = {(r.ci, r.cj): r.label for r in
                (await session.execute(select(ranked).where(ranked.c.rank == 1))).all()}

    out = []
    for i, j, n, mean in cells:
        lat, lng = round(i * resolution, 9), round(j * resolution, 9)  # no 47.000000000000004 keys
        center = math.radians(lat + resolution / 2)
        area_km2 = (resolution * KM_PER_DEGREE) ** 2 * max(math.cos(center), 1e-9)
        out.append({"lat": lat, "lng": lng, "count": int(n), "confidence": float(mean or 0.0),
                    "density": round(n / area_km2, 4), "area_km2": round(area_km2, 4),
                    "label": dominant.get((i, j))})
    return out


async def fingerprint(session: AsyncSession, user_id: str, bbox: BBox | None = None) -> tuple[int, str | None]:
    """Changes whenever the user's media in ``bbox`` change: an insert or update moves the
    newest ``updated_at``, a delete or a move out of the box lowers the count. Read from the
    (user_id, lat, lng, updated_at) index alone, and only over the box a cached entry covers."""
    where = [MediaItem.user_id == user_id, *_bbox_filter(bbox)]
    n, latest = (await session.execute(select(func.count(), func.max(MediaItem.updated_at)).where(*where))).one()
    return int(n or 0), latest.isoformat() if latest is not None else None


class StatsCache:
    """LRU + TTL; entries also carry the user's data fingerprint, so any write to their media
    invalidates them, in every process, without a message bus."""

    def __init__(self, ttl: float, max_entries: int = 512) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._data: OrderedDict[tuple[Any, ...], tuple[float, Any, Any]] = OrderedDict()

    def get(self, key: tuple[Any, ...], version: Any) -> Any | None:
        hit = self._data.get(key)
        if hit is None or hit[0] < time.monotonic() or hit[1] != version:
            return None
        self._data.move_to_end(key)
        return hit[2]

    def put(self, key: tuple[Any, ...], version: Any, value: Any) -> None:
        self._data[key] = (time.monotonic() + self.ttl, version, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def invalidate_user(self, user_id: str) -> None:
        for key in [k for k in self._data if k[0] == user_id]:
            del self._data[key]
