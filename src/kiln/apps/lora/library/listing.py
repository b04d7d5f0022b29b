"""Listing adapters in SQL: search (SQLite's trigram index or LIKE), active and tag filters,
sorts, pages, and the exact `total` / `filtered` counts (tag ORs by inclusion-exclusion over
the tag index, intersections as merges on SQLite)."""

from __future__ import annotations

import itertools
import math
from typing import Any

from sqlalchemy import column, exists, func, intersect, literal_column, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kiln.apps.lora.models import Adapter, AdapterTag

SORTS = {"name", "created_at", "updated_at", "file_size"}
FEW = 2000


def _like(term: str) -> str:
    escaped = term.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _quoted(text_: str) -> str:
    return '"' + text_.replace('"', '""') + '"'


def _fts_query(terms: list[str]) -> str:
    return " AND ".join(_quoted(t.casefold()) for t in terms)


def _fts_ok(dialect: str, terms: list[str]) -> bool:
    return dialect == "sqlite" and all(len(t) >= 3 for t in terms)


def _fts_ids(terms: list[str]) -> Any:
    """The ids of the adapters whose search text holds every term (SQLite's trigram index)."""
    found = text(
        "SELECT s.adapter_id FROM lora_search s JOIN lora_adapters_fts f ON f.rowid = s.id "
        "WHERE lora_adapters_fts MATCH :fts_query"
    ).bindparams(fts_query=_fts_query(terms))
    return select(found.columns(column("adapter_id")).subquery().c.adapter_id)


def _search(dialect: str, terms: list[str], *, indexed: bool) -> list[Any]:
    """Substring match of every term: SQLite's trigram index for terms of 3+ characters, LIKE
    otherwise (PostgreSQL's LIKE uses the pg_trgm index when the extension is there). When many
    rows match, LIKE on rows walked in sort order fills a page sooner than the index would."""
    if not terms:
        return []
    if indexed and _fts_ok(dialect, terms):
        return [Adapter.id.in_(_fts_ids(terms))]
    return [Adapter.search_text.like(_like(term), escape="\\") for term in terms]


def _filters(
    dialect: str, terms: list[str], active_only: bool | None, tags: list[str], *, tags_exist: bool
) -> list[Any]:
    """WHERE terms; tags as EXISTS (walking a sort index) or as IN (from the tag index)."""
    where = _search(dialect, terms, indexed=not tags_exist)
    if active_only:
        where.append(Adapter.active.is_(True))
    if tags:
        if tags_exist:
            where.append(exists().where(AdapterTag.adapter_id == Adapter.id, AdapterTag.tag_norm.in_(tags)))
        else:
            where.append(Adapter.id.in_(select(AdapterTag.adapter_id).where(AdapterTag.tag_norm.in_(tags))))
    return where


def _tagged(tags: list[str]) -> Any:
    return select(AdapterTag.adapter_id).where(AdapterTag.tag_norm.in_(tags))


def _in_all(sets: list[Any]) -> Any:
    """How many ids are in every one of `sets`, as SQLite's INTERSECT with ORDER BY runs it: a
    merge of the sets in id order (a tag's ids come sorted out of `ix_lora_adapter_tags_norm`),
    about twice as fast as probing an index once per id of the first set."""
    merged = intersect(*sets).order_by(literal_column("1"))
    return select(func.count()).select_from(merged.subquery()).scalar_subquery()


def _tag_union_count(dialect: str, tags: list[str]) -> Any:
    """How many adapters have any of `tags`. Up to three tags by inclusion-exclusion over index
    counts (each a range of the tag index; an intersection is a merge on SQLite, a join
    PostgreSQL merges itself): no de-duplication of thousands of ids. More tags:
    COUNT(DISTINCT)."""
    if len(tags) > 3:
        return (
            select(func.count(func.distinct(AdapterTag.adapter_id)))
            .where(AdapterTag.tag_norm.in_(tags))
            .scalar_subquery()
        )
    terms: list[Any] = []
    for size in range(1, len(tags) + 1):
        for combo in itertools.combinations(tags, size):
            sign = 1 if size % 2 else -1
            if size > 1 and dialect == "sqlite":
                terms.append(_in_all([_tagged([tag]) for tag in combo]) * sign)
                continue
            aliases = [aliased(AdapterTag) for _ in combo]
            stmt = select(func.count()).select_from(aliases[0]).where(aliases[0].tag_norm == combo[0])
            for alias, tag in zip(aliases[1:], combo[1:], strict=True):
                stmt = stmt.join(alias, alias.adapter_id == aliases[0].adapter_id).where(alias.tag_norm == tag)
            terms.append(stmt.scalar_subquery() * sign)
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _count_stmt(dialect: str, terms: list[str], active_only: bool | None, tags: list[str]) -> Any:
    """One statement answering (total, filtered)."""
    total = select(func.count()).select_from(Adapter).scalar_subquery()
    if not terms and not active_only and not tags:
        everything = select(func.count()).select_from(Adapter).subquery()
        return select(everything.c[0], everything.c[0])  # one count, not two
    if terms and not tags and not active_only and _fts_ok(dialect, terms):
        return text(
            "SELECT (SELECT count(*) FROM lora_adapters), count(*) FROM lora_adapters_fts "
            "WHERE lora_adapters_fts MATCH :fts_query"
        ).bindparams(fts_query=_fts_query(terms))
    if tags and not terms and not active_only:
        return select(total, _tag_union_count(dialect, tags))
    if tags and terms and not active_only and _fts_ok(dialect, terms):
        # the search's ids (from the trigram index) merged with the tags' ids
        return select(total, _in_all([_fts_ids(terms), _tagged(tags)]))
    return (
        select(total, func.count())
        .select_from(Adapter)
        .where(*_filters(dialect, terms, active_only, tags, tags_exist=False))
    )


def _order(sort: str) -> list[Any]:
    key = sort if sort in SORTS else "name"
    if key == "created_at":
        return [Adapter.created_at.desc(), Adapter.id.desc()]
    if key == "updated_at":
        return [Adapter.updated_at.desc(), Adapter.id.desc()]
    if key == "file_size":
        return [Adapter.primary_file_size_kb.desc(), Adapter.id.desc()]
    return [func.lower(Adapter.name), Adapter.id]


async def _page(
    session: AsyncSession,
    dialect: str,
    terms: list[str],
    active_only: bool | None,
    tags: list[str],
    sort: str,
    offset: int,
    limit: int,
    *,
    everything: bool,
    few: bool,
) -> list[Any]:
    table = Adapter.__table__
    if everything:
        stmt = select(table)
    elif few:
        # Few matches: collect their ids from the narrow indexes, then sort only those.
        ids = select(Adapter.id).where(*_filters(dialect, terms, active_only, tags, tags_exist=False))
        stmt = select(table).where(Adapter.id.in_(ids))
    else:
        # Many matches: walk the sort index; a page fills after a few rows.
        stmt = select(table).where(*_filters(dialect, terms, active_only, tags, tags_exist=True))
    # Plain rows (no ORM objects): the view reads them by column name.
    return list((await session.execute(stmt.order_by(*_order(sort)).limit(limit).offset(offset))).all())


async def _tag_page(session: AsyncSession, tags: list[str], offset: int, limit: int) -> list[Any]:
    """A page of adapters having any of `tags`, by name: each tag's first offset+limit adapters come
    in name order from (tag_norm, name_key) (any adapter of the page is among them), then merge."""
    depth = offset + limit
    branches = [
        select(AdapterTag.adapter_id, AdapterTag.name_key)
        .where(AdapterTag.tag_norm == tag)
        .order_by(AdapterTag.name_key, AdapterTag.adapter_id)
        .limit(depth)
        .subquery()
        for tag in tags
    ]
    merged = union_all(*(select(b.c.adapter_id, b.c.name_key) for b in branches)).subquery()
    key = func.min(merged.c.name_key).label("key")
    ids = [
        r[0]
        for r in (
            await session.execute(
                select(merged.c.adapter_id, key)
                .group_by(merged.c.adapter_id)
                .order_by(key, merged.c.adapter_id)
                .limit(limit)
                .offset(offset)
            )
        ).all()
    ]
    if not ids:
        return []
    rows = {r.id: r for r in (await session.execute(select(Adapter.__table__).where(Adapter.id.in_(ids)))).all()}
    return [rows[i] for i in ids if i in rows]


def parse_tags(raw: str | None) -> list[str]:
    if not raw:
        return []
    return list(dict.fromkeys(t.strip().casefold() for t in raw.split(",") if t.strip()))[:50]


async def list_adapters(
    session: AsyncSession,
    *,
    search: str = "",
    active_only: bool | None = None,
    tags: list[str] | None = None,
    sort: str = "name",
    page: int = 1,
    per_page: int = 24,
    max_per_page: int = 500,
) -> dict[str, Any]:
    page = max(1, page)
    per_page = min(max(1, per_page), max_per_page)
    terms = (search or "").split()[:8]
    tags = tags or []
    dialect = session.bind.dialect.name
    total, filtered = (
        int(v or 0) for v in (await session.execute(_count_stmt(dialect, terms, active_only, tags))).one()
    )
    rows: list[Any] = []
    offset = (page - 1) * per_page
    if filtered and offset < filtered:
        if tags and not terms and not active_only and (sort if sort in SORTS else "name") == "name":
            rows = await _tag_page(session, tags, offset, per_page)
        else:
            rows = await _page(
                session,
                dialect,
                terms,
                active_only,
                tags,
                sort,
                offset,
                per_page,
                everything=filtered == total,
                few=filtered <= FEW,
            )
    return {
        "items": rows,
        "total": total,
        "filtered": filtered,
        "page": page,
        "pages": math.ceil(filtered / per_page) if filtered else 0,
        "per_page": per_page,
    }
