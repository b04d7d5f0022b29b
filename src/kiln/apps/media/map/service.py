"""Map points and grid statistics, aggregated in SQL.

Grid cells are keyed by the south-west corner (as the reference), computed exactly in
nano-degrees (grid.py); whole-multiple-of-0.005° resolutions come from the pre-aggregated grid.
Density is reported per km² with the cos(latitude) correction, not per square
degree. Confidence is 0..1 in the database; the router converts to the contract's percent.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select, text, true, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.map import grid
from kiln.apps.media.models import READY, MediaDetection, MediaGridCell, MediaGridLabel, MediaItem

KM_PER_DEGREE = 111.32


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
    session: AsyncSession,
    user_id: str,
    *,
    bbox: BBox | None,
    has_trash: bool | None,
    min_confidence: float | None,
    limit: int,
    offset: int,
) -> tuple[list[MediaItem], dict[str, list[MediaDetection]], int]:
    where = [MediaItem.user_id == user_id, MediaItem.lat.is_not(None), MediaItem.lng.is_not(None), *_bbox_filter(bbox)]
    if has_trash is not None:
        where.append(MediaItem.has_trash.is_(has_trash))
    if min_confidence:
        where.append(MediaItem.confidence >= min_confidence)
    total = await session.scalar(select(func.count()).select_from(MediaItem).where(*where))
    items = list(
        await session.scalars(
            select(MediaItem)
            .where(*where)
            .order_by(MediaItem.created_at.desc(), MediaItem.id)
            .offset(offset)
            .limit(limit)
        )
    )
    found: dict[str, list[MediaDetection]] = {i.id: [] for i in items}
    if items:
        rows = await session.scalars(
            select(MediaDetection)
            .where(MediaDetection.media_id.in_(list(found)))
            .order_by(MediaDetection.confidence.desc())
        )
        for d in rows:
            found[d.media_id].append(d)
    return items, found, int(total or 0)


Acc = tuple[dict[tuple[int, int], list[int]], dict[tuple[int, int], dict[str, int]]]
SLAB = 1e-8  # degrees; far above float error of lat * 1e9, far below a cell


def _contributing(user_id: str) -> list[Any]:
    # `has_trash = true`, not `IS true`: only equality lets PostgreSQL range-scan the indexes
    # (user_id, has_trash, status, lat|lng, ...), so no table row is read.
    return [
        MediaItem.user_id == user_id,
        MediaItem.has_trash == true(),
        MediaItem.status == READY,
        MediaItem.lat.is_not(None),
        MediaItem.lng.is_not(None),
    ]


async def grid_stats(session: AsyncSession, user_id: str, bbox: BBox, resolution: float) -> list[dict[str, Any]]:
    """Cells of the user's contributing media (READY, geotagged, has_trash) in ``bbox``.

    Cell (i, j) holds the points with ``nano(lat) // rn == i`` and ``nano(lng) // rn == j`` (rn =
    resolution in nano-degrees; see grid.py), so 19.9 at 0.01 is in cell 1990, not 1989. A
    resolution that is a whole multiple of 0.005° is answered from the pre-aggregated grid plus
    the rows of the border cells (exactly the row-level result); any other from the rows.
    """
    rn = grid.resolution_nano(resolution)
    if session.bind.dialect.name == "postgresql":
        # These statements are prepared (asyncpg) and differ only in their ranges; after five runs
        # PostgreSQL may switch to a generic plan that ignores them and reads every cell of the
        # user. And each branch of a UNION ALL reads a few thousand index entries at most: starting
        # parallel workers for that costs more than it saves.
        await session.execute(
            text(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)"
            )
        )
    acc = None
    if rn % grid.FINE_NANO == 0:
        acc = await _from_grid(session, user_id, bbox, rn // grid.FINE_NANO, rn)
    if acc is None:
        acc = await _from_rows(session, user_id, bbox, rn)
    return _shape(acc, resolution, rn)


def _shape(acc: Acc, resolution: float, rn: int) -> list[dict[str, Any]]:
    cells, labels = acc
    out = []
    for i, j in sorted(cells):
        n, conf = cells[(i, j)]
        if n <= 0:
            continue
        lat, lng = round(i * rn / grid.NANO, 9), round(j * rn / grid.NANO, 9)
        center = math.radians(lat + resolution / 2)
        area_km2 = (resolution * KM_PER_DEGREE) ** 2 * max(math.cos(center), 1e-9)
        ranked = [(-c, label) for label, c in labels.get((i, j), {}).items() if c > 0]
        out.append(
            {
                "lat": lat,
                "lng": lng,
                "count": n,
                "confidence": conf / n / grid.MICRO,
                "density": round(n / area_km2, 4),
                "area_km2": round(area_km2, 4),
                "label": min(ranked)[1] if ranked else None,
            }
        )
    return out


async def _from_rows(session: AsyncSession, user_id: str, bbox: BBox, rn: int) -> Acc:
    dialect = session.bind.dialect.name
    ci = grid.sql_floordiv(grid.sql_nano(MediaItem.lat, dialect), rn).label("ci")
    cj = grid.sql_floordiv(grid.sql_nano(MediaItem.lng, dialect), rn).label("cj")
    where = [*_contributing(user_id), *_bbox_filter(bbox)]
    cells = {
        (int(i), int(j)): [int(n), int(c)]
        for i, j, n, c in await session.execute(
            select(ci, cj, func.count(), func.sum(grid.sql_micro(MediaItem.confidence, dialect)))
            .where(*where)
            .group_by(ci, cj)
        )
    }
    labels: dict[tuple[int, int], dict[str, int]] = defaultdict(dict)
    for i, j, label, n in await session.execute(
        select(ci, cj, MediaDetection.label, func.count())
        .join(MediaDetection, MediaDetection.media_id == MediaItem.id)
        .where(*where)
        .group_by(ci, cj, MediaDetection.label)
    ):
        labels[(int(i), int(j))][label] = int(n)
    return cells, labels


def _span(lo: float, hi: float) -> tuple[int, int]:
    """Level-0 cells lying (about) inside [lo, hi]; the row corrections make the answer exact."""
    b = grid.FINE_NANO
    return -(-grid.nano(lo) // b), grid.nano(hi) // b - 1


async def _from_grid(session: AsyncSession, user_id: str, bbox: BBox, m: int, rn: int) -> Acc | None:
    fi0, fi1 = _span(bbox.min_lat, bbox.max_lat)
    fj0, fj1 = _span(bbox.min_lng, bbox.max_lng)
    if fi0 > fi1 or fj0 > fj1:
        return None
    k = grid.LEVEL_FACTOR
    terms: list[tuple[int, int, int, int, int, int]] = []  # level, i0, i1, j0, j1, divisor
    ci0, ci1, cj0, cj1 = -(-fi0 // k), (fi1 + 1) // k - 1, -(-fj0 // k), (fj1 + 1) // k - 1
    if m % k == 0 and ci0 <= ci1 and cj0 <= cj1:
        # 0.05° cells inside, a ring of 0.005° cells around them (four disjoint bands)
        terms.append((1, ci0, ci1, cj0, cj1, m // k))
        terms += [
            (0, fi0, k * ci0 - 1, fj0, fj1, m),
            (0, k * ci1 + k, fi1, fj0, fj1, m),
            (0, k * ci0, k * ci1 + k - 1, fj0, k * cj0 - 1, m),
            (0, k * ci0, k * ci1 + k - 1, k * cj1 + k, fj1, m),
        ]
    else:
        terms.append((0, fi0, fi1, fj0, fj1, m))
    cells: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    labels: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sqlite = session.bind.dialect.name == "sqlite"
    cell_parts, label_parts = [], []
    for level, i0, i1, j0, j1, d in terms:
        if i0 > i1 or j0 > j1:
            continue
        for table in (MediaGridCell, MediaGridLabel):
            ci = grid.sql_floordiv(table.lat_idx, d).label("ci")
            cj = grid.sql_floordiv(table.lng_idx, d).label("cj")
            # Each table has a lat-first and a lng-first index: a band scans the one whose leading
            # range is its narrow side. PostgreSQL's statistics see that; SQLite (often without
            # ANALYZE) is shown only the narrow side's range (`+ 0` hides the other).
            lat_idx, lng_idx = table.lat_idx, table.lng_idx
            if sqlite and j1 - j0 < i1 - i0:
                lat_idx = lat_idx + 0
            elif sqlite:
                lng_idx = lng_idx + 0
            where = [table.user_id == user_id, table.level == level, lat_idx.between(i0, i1), lng_idx.between(j0, j1)]
            if table is MediaGridCell:
                cell_parts.append(
                    select(ci, cj, func.sum(table.count), func.sum(table.confidence_sum)).where(*where).group_by(ci, cj)
                )
            else:
                label_parts.append(
                    select(ci, cj, table.label, func.sum(table.count)).where(*where).group_by(ci, cj, table.label)
                )
    # One statement per table: every band keeps its own plan inside the UNION ALL.
    if cell_parts:
        for i, j, n, c in await session.execute(union_all(*cell_parts)):
            cell = cells[(int(i), int(j))]
            cell[0] += int(n)
            cell[1] += int(c)
        for i, j, label, n in await session.execute(union_all(*label_parts)):
            labels[(int(i), int(j))][label] += int(n)
    await _border_rows(session, user_id, bbox, (fi0, fi1, fj0, fj1), rn, cells, labels)
    return cells, labels


async def _border_rows(
    session: AsyncSession,
    user_id: str,
    bbox: BBox,
    inner: tuple[int, int, int, int],
    rn: int,
    cells: dict[tuple[int, int], list[int]],
    labels: dict[tuple[int, int], dict[str, int]],
) -> None:
    """Add the points in the bbox whose level-0 cell the aggregates did not cover, and take back
    the points the aggregates covered but the bbox (BETWEEN on the raw lat/lng) excludes. Both
    lie within a cell of the bbox's edges: four disjoint slabs, each a range scan of an index."""
    fi0, fi1, fj0, fj1 = inner
    b, n9 = grid.FINE_NANO, grid.NANO
    lat_lo, lat_hi, lng_lo, lng_hi = fi0 * b / n9, (fi1 + 1) * b / n9, fj0 * b / n9, (fj1 + 1) * b / n9
    s_lo, s_hi = min(bbox.min_lat, lat_lo) - SLAB, max(bbox.min_lat, lat_lo) + SLAB
    n_lo, n_hi = min(bbox.max_lat, lat_hi) - SLAB, max(bbox.max_lat, lat_hi) + SLAB
    w_lo, w_hi = min(bbox.min_lng, lng_lo) - SLAB, max(bbox.min_lng, lng_lo) + SLAB
    e_lo, e_hi = min(bbox.max_lng, lng_hi) - SLAB, max(bbox.max_lng, lng_hi) + SLAB
    lat, lng = MediaItem.lat, MediaItem.lng
    # `x + 0` hides the long side of a slab from the planner, so it range-scans the narrow side's
    # index (SQLite otherwise picks either, and reading the whole bbox is the very cost avoided).
    lat_, lng_ = lat + 0.0, lng + 0.0
    slabs = [
        (lat >= s_lo, lat < s_hi, lng_ >= w_lo, lng_ <= e_hi),
        (lat >= n_lo, lat <= n_hi, lng_ >= w_lo, lng_ <= e_hi),
        (lat_ >= s_hi, lat_ < n_lo, lng >= w_lo, lng < w_hi),
        (lat_ >= s_hi, lat_ < n_lo, lng >= e_lo, lng <= e_hi),
    ]
    # A row counts +1 when the bbox holds it but no aggregated cell did, -1 when an aggregated
    # cell held it but the bbox does not; the rest cancel out. Summed per output cell in SQL, with
    # the same exact keys as the grid, so only a few rows per edge cell come back. The slabs are
    # disjoint (at least one whole level-0 cell lies between opposite edges), so no row counts twice.
    dialect = session.bind.dialect.name
    inside = and_(*_bbox_filter(bbox))
    covered = and_(
        grid.sql_floordiv(grid.sql_nano(lat, dialect), b).between(fi0, fi1),
        grid.sql_floordiv(grid.sql_nano(lng, dialect), b).between(fj0, fj1),
    )
    sign = (case((inside, 1), else_=0) - case((covered, 1), else_=0)).label("sign")
    ci = grid.sql_floordiv(grid.sql_nano(lat, dialect), rn).label("ci")
    cj = grid.sql_floordiv(grid.sql_nano(lng, dialect), rn).label("cj")
    settle = [*_contributing(user_id), or_(inside, covered), not_(and_(inside, covered))]
    slab_cells = union_all(
        *(
            select(ci, cj, sign, func.count(), func.sum(grid.sql_micro(MediaItem.confidence, dialect)))
            .where(*settle, *slab)
            .group_by(ci, cj, sign)
            for slab in slabs
        )
    )
    for i, j, k, n, conf in await session.execute(slab_cells):
        cell = cells[(int(i), int(j))]
        cell[0] += int(k) * int(n)
        cell[1] += int(k) * int(conf)
    slab_labels = union_all(
        *(
            select(ci, cj, sign, MediaDetection.label, func.count())
            .join(MediaDetection, MediaDetection.media_id == MediaItem.id)
            .where(*settle, *slab)
            .group_by(ci, cj, sign, MediaDetection.label)
            for slab in slabs
        )
    )
    for i, j, k, label, n in await session.execute(slab_labels):
        labels[(int(i), int(j))][label] += int(k) * int(n)


async def fingerprint(session: AsyncSession, user_id: str) -> int:
    """The stats of a user change only with their grid, whose version every change bumps."""
    return await grid.version(session, user_id)


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
