"""Pre-aggregated map grid, maintained in the transaction that changes what an item contributes.

An item *contributes* to the map statistics when it is READY, has lat and lng, and has_trash.
Its contribution is recorded once in ``media_grid_members`` (fine cell, confidence in micro
units, label counts) and summed into ``media_grid_cells`` / ``media_grid_labels`` at two levels:
level 0 = 0.005° cells, level 1 = 0.05° cells. Removing an item subtracts exactly what the
member row says it added, so the sums never depend on detections still being there, nor on the
order in which a caller deletes detections and changes the status. Adding is idempotent
(member primary key), removing is ``DELETE ... RETURNING`` (only one transaction subtracts).

Exact integer arithmetic, shared by the row-level path (map_service) so both answer the same:
* a coordinate in nano-degrees: ``floor(x * 1e9 + 0.5)`` (IEEE double ops, identical in Python,
  SQLite and PostgreSQL); a cell index: ``nano // resolution_nano`` (floor division);
* confidence in micro units: ``floor(coalesce(c, 0) * 1e6 + 0.5)``; sums are integers, so adding
  and subtracting never drifts and the sum of the sums equals the sum of the rows.

Every change bumps ``media_grid_versions`` for the user: the stats cache keys on it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, bindparam, case, cast, delete, func, select, text, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from kiln.apps.media.models import (
    READY,
    MediaDetection,
    MediaGridCell,
    MediaGridLabel,
    MediaGridMember,
    MediaGridVersion,
    MediaItem,
)

Db = AsyncSession | AsyncConnection  # a session, or the connection of a grouped transaction (batch.py)
NANO = 1_000_000_000
MICRO = 1_000_000
FINE_NANO = 5_000_000  # level 0: 0.005°
LEVEL_FACTOR = 10  # level 1 = 10 × level 0 = 0.05°
LEVELS = (0, 1)
CHUNK = 500


def nano(x: float) -> int:
    return math.floor(x * 1e9 + 0.5)


def micro(c: float | None) -> int:
    return math.floor((c or 0.0) * 1e6 + 0.5)


def resolution_nano(resolution: float) -> int:
    return max(1, nano(resolution))


def contributes(status: str | None, has_trash: bool | None, lat: float | None, lng: float | None) -> bool:
    return status == READY and bool(has_trash) and lat is not None and lng is not None


# ------------------------------------------------------------------ SQL twins of nano / micro / //


def sql_floor(expr: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return cast(func.floor(expr), BigInteger)
    # SQLite may lack floor(); CAST truncates toward zero, so step down for negative non-integers.
    truncated = cast(expr, Integer)
    return case((and_(expr < 0, truncated != expr), truncated - 1), else_=truncated)


def sql_nano(col: Any, dialect: str) -> Any:
    return sql_floor(col * 1e9 + 0.5, dialect)


def sql_micro(col: Any, dialect: str) -> Any:
    return sql_floor(func.coalesce(col, 0.0) * 1e6 + 0.5, dialect)


def sql_floordiv(a: Any, b: int) -> Any:
    """Floor division of an integer expression by a positive integer, exact on both databases
    (both truncate integer division toward zero: make the dividend divisible first)."""
    return (a - ((a % b) + b) % b) // b


# ------------------------------------------------------------------ deltas


@dataclass(slots=True)
class Delta:
    cells: dict[tuple[str, int, int, int], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    labels: dict[tuple[str, int, int, int, str], int] = field(default_factory=lambda: defaultdict(int))

    def add(self, user_id: str, lat_idx: int, lng_idx: int, conf: int, labels: dict[str, int], sign: int) -> None:
        for level in LEVELS:
            i, j = (lat_idx, lng_idx) if level == 0 else (lat_idx // LEVEL_FACTOR, lng_idx // LEVEL_FACTOR)
            cell = self.cells[(user_id, level, i, j)]
            cell[0] += sign
            cell[1] += sign * conf
            for label, n in labels.items():
                self.labels[(user_id, level, i, j, label)] += sign * n

    def __bool__(self) -> bool:
        return bool(self.cells)


def _dialect_name(db: Db) -> str:
    """A session's or a connection's dialect (grouped transitions run on a Core connection)."""
    return db.dialect.name if isinstance(db, AsyncConnection) else db.bind.dialect.name


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def apply(session: Db, delta: Delta) -> None:
    """Upsert the sums (keys sorted: concurrent writers lock rows in one order), drop rows that
    reached 0, bump each touched user's version."""
    if not delta:
        return
    insert = _insert(_dialect_name(session))
    cells = MediaGridCell.__table__
    rows = [
        {"user_id": k[0], "level": k[1], "lat_idx": k[2], "lng_idx": k[3], "count": v[0], "confidence_sum": v[1]}
        for k, v in sorted(delta.cells.items())
        if v[0] or v[1]
    ]
    if rows:
        stmt = insert(cells)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "level", "lat_idx", "lng_idx"],
            set_={
                "count": cells.c.count + stmt.excluded.count,
                "confidence_sum": cells.c.confidence_sum + stmt.excluded.confidence_sum,
            },
        )
        await session.execute(stmt, rows)
    labels = MediaGridLabel.__table__
    lrows = [
        {"user_id": k[0], "level": k[1], "lat_idx": k[2], "lng_idx": k[3], "label": k[4], "count": v}
        for k, v in sorted(delta.labels.items())
        if v
    ]
    if lrows:
        stmt = insert(labels)
        stmt = stmt.on_conflict_do_update(
            index_elements=["user_id", "level", "lat_idx", "lng_idx", "label"],
            set_={"count": labels.c.count + stmt.excluded.count},
        )
        await session.execute(stmt, lrows)
    gone = [r for r in rows if r["count"] < 0]
    if gone:
        await session.execute(
            delete(cells).where(
                cells.c.user_id == _b("user_id"),
                cells.c.level == _b("level"),
                cells.c.lat_idx == _b("lat_idx"),
                cells.c.lng_idx == _b("lng_idx"),
                cells.c.count <= 0,
            ),
            gone,
        )
    lgone = [r for r in lrows if r["count"] < 0]
    if lgone:
        await session.execute(
            delete(labels).where(
                labels.c.user_id == _b("user_id"),
                labels.c.level == _b("level"),
                labels.c.lat_idx == _b("lat_idx"),
                labels.c.lng_idx == _b("lng_idx"),
                labels.c.label == _b("label"),
                labels.c.count <= 0,
            ),
            lgone,
        )
    versions = MediaGridVersion.__table__
    stmt = insert(versions)
    stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_={"version": versions.c.version + 1})
    await session.execute(stmt, [{"user_id": u, "version": 1} for u in sorted({k[0] for k in delta.cells})])


def _b(name: str) -> Any:
    return bindparam(name)


# ------------------------------------------------------------------ membership


async def _labels_of(session: Db, ids: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for start in range(0, len(ids), CHUNK):
        rows = await session.execute(
            select(MediaDetection.media_id, MediaDetection.label, func.count())
            .where(MediaDetection.media_id.in_(ids[start : start + CHUNK]))
            .group_by(MediaDetection.media_id, MediaDetection.label)
        )
        for media_id, label, n in rows:
            out[media_id][label] = int(n)
    return out


async def remove(session: Db, media_ids: Sequence[str], delta: Delta | None = None) -> Delta:
    """Take these items out of the grid (if they were in). Returns the delta (applied unless the
    caller passes its own to collect into)."""
    own = delta is None
    delta = delta if delta is not None else Delta()
    members = MediaGridMember.__table__
    for start in range(0, len(media_ids), CHUNK):
        gone = await session.execute(
            delete(members)
            .where(members.c.media_id.in_(media_ids[start : start + CHUNK]))
            .returning(members.c.user_id, members.c.lat_idx, members.c.lng_idx, members.c.confidence, members.c.labels)
        )
        for user_id, i, j, conf, labels in gone:
            delta.add(user_id, int(i), int(j), int(conf), labels or {}, -1)
    if own:
        await apply(session, delta)
    return delta


async def sync(session: Db, media_ids: Sequence[str]) -> None:
    """Make the grid reflect these items' current rows: remove what they contributed, add what
    they contribute now. Call inside the transaction that changed them."""
    delta = await remove(session, media_ids, Delta())
    rows = []
    for start in range(0, len(media_ids), CHUNK):
        rows += (
            await session.execute(
                select(MediaItem.id, MediaItem.user_id, MediaItem.lat, MediaItem.lng, MediaItem.confidence).where(
                    MediaItem.id.in_(media_ids[start : start + CHUNK]),
                    MediaItem.status == READY,
                    MediaItem.has_trash == true(),
                    MediaItem.lat.is_not(None),
                    MediaItem.lng.is_not(None),
                )
            )
        ).all()
    if rows:
        labels = await _labels_of(session, [r.id for r in rows])
        insert = _insert(_dialect_name(session))
        members = MediaGridMember.__table__
        for r in rows:
            i, j, conf = nano(r.lat) // FINE_NANO, nano(r.lng) // FINE_NANO, micro(r.confidence)
            mine = labels.get(r.id, {})
            added = await session.execute(
                insert(members)
                .values(media_id=r.id, user_id=r.user_id, lat_idx=i, lng_idx=j, confidence=conf, labels=mine)
                .on_conflict_do_nothing(index_elements=["media_id"])
                .returning(members.c.media_id)
            )
            if added.first() is not None:  # a concurrent sync may have added it first
                delta.add(r.user_id, i, j, conf, mine, 1)
    await apply(session, delta)


async def version(session: AsyncSession, user_id: str) -> int:
    return int(await session.scalar(select(MediaGridVersion.version).where(MediaGridVersion.user_id == user_id)) or 0)


def backfill_sql(dialect: str, where: str = "TRUE") -> list[str]:
    """SQL that fills the grid from the rows (migration 0006, bulk loads); `where` filters
    media_items (alias m). The key expressions are the SQL twins of nano/micro/floordiv."""

    def floor(x: str) -> str:
        if dialect == "postgresql":
            return f"CAST(floor({x}) AS BIGINT)"
        return (
            f"(CASE WHEN ({x}) < 0 AND CAST({x} AS INTEGER) != ({x}) THEN CAST({x} AS INTEGER) - 1 "
            f"ELSE CAST({x} AS INTEGER) END)"
        )

    def fdiv(a: str, b: int) -> str:
        return f"((({a}) - ((({a}) % {b}) + {b}) % {b}) / {b})"

    true_ = "TRUE" if dialect == "postgresql" else "1"
    obj = "json_object_agg(label, n)::jsonb" if dialect == "postgresql" else "json_group_object(label, n)"
    empty = "'{}'::jsonb" if dialect == "postgresql" else "'{}'"
    return [
        f"""INSERT INTO media_grid_members (media_id, user_id, lat_idx, lng_idx, confidence, labels)
        SELECT m.id, m.user_id, {fdiv(floor("m.lat * 1e9 + 0.5"), FINE_NANO)},
               {fdiv(floor("m.lng * 1e9 + 0.5"), FINE_NANO)},
               {floor("coalesce(m.confidence, 0.0) * 1e6 + 0.5")}, coalesce(l.labels, {empty})
        FROM media_items m LEFT JOIN (
            SELECT media_id, {obj} AS labels FROM (
                SELECT media_id, label, count(*) AS n FROM media_detections GROUP BY media_id, label) d
            GROUP BY media_id) l ON l.media_id = m.id
        WHERE m.status = 'READY' AND m.has_trash = {true_} AND m.lat IS NOT NULL AND m.lng IS NOT NULL
          AND ({where})""",
        """INSERT INTO media_grid_cells (user_id, level, lat_idx, lng_idx, count, confidence_sum)
        SELECT user_id, 0, lat_idx, lng_idx, count(*), sum(confidence) FROM media_grid_members g
        WHERE NOT EXISTS (SELECT 1 FROM media_grid_cells c WHERE c.user_id = g.user_id)
        GROUP BY user_id, lat_idx, lng_idx""",
        """INSERT INTO media_grid_labels (user_id, level, lat_idx, lng_idx, label, count)
        SELECT g.user_id, 0, g.lat_idx, g.lng_idx, d.label, count(*)
        FROM media_grid_members g JOIN media_detections d ON d.media_id = g.media_id
        WHERE NOT EXISTS (SELECT 1 FROM media_grid_labels c WHERE c.user_id = g.user_id)
        GROUP BY g.user_id, g.lat_idx, g.lng_idx, d.label""",
        f"""INSERT INTO media_grid_cells (user_id, level, lat_idx, lng_idx, count, confidence_sum)
        SELECT user_id, 1, {fdiv("lat_idx", LEVEL_FACTOR)}, {fdiv("lng_idx", LEVEL_FACTOR)}, sum(count),
               sum(confidence_sum) FROM media_grid_cells WHERE level = 0
          AND user_id NOT IN (SELECT user_id FROM media_grid_cells WHERE level = 1)
        GROUP BY user_id, {fdiv("lat_idx", LEVEL_FACTOR)}, {fdiv("lng_idx", LEVEL_FACTOR)}""",
        f"""INSERT INTO media_grid_labels (user_id, level, lat_idx, lng_idx, label, count)
        SELECT user_id, 1, {fdiv("lat_idx", LEVEL_FACTOR)}, {fdiv("lng_idx", LEVEL_FACTOR)}, label, sum(count)
        FROM media_grid_labels WHERE level = 0
          AND user_id NOT IN (SELECT user_id FROM media_grid_labels WHERE level = 1)
        GROUP BY user_id, {fdiv("lat_idx", LEVEL_FACTOR)}, {fdiv("lng_idx", LEVEL_FACTOR)}, label""",
        """INSERT INTO media_grid_versions (user_id, version)
        SELECT DISTINCT user_id, 1 FROM media_grid_members
        WHERE user_id NOT IN (SELECT user_id FROM media_grid_versions)""",
    ]


async def rebuild(session: AsyncSession, user_id: str) -> None:
    """Recompute one user's grid from their rows (repair tool, bulk loads)."""
    for model in (MediaGridCell, MediaGridLabel, MediaGridMember):
        await session.execute(delete(model).where(model.user_id == user_id))
    for sql in backfill_sql(session.bind.dialect.name, "m.user_id = :uid"):
        await session.execute(text(sql), {"uid": user_id} if ":uid" in sql else {})
    await apply(session, Delta(cells={(user_id, 0, 0, 0): [0, 0]}))  # bump the version
