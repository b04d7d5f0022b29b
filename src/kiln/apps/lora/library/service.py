"""Adapter records: create from a file, list/search/filter/sort/paginate in SQL, patch, delete,
activate/deactivate, bulk actions in one transaction, the tag list. Plain functions on a session."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import column, delete, exists, func, intersect, literal_column, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.errors import LoraError, not_found
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts
from kiln.apps.lora.library.values import check_field, check_patch, check_text, search_text, unique_words
from kiln.apps.lora.models import Adapter, AdapterTag
from kiln.core.db import utcnow

CREATE_TEXT = ("version", "canonical_version_name", "author_username", "primary_file_download_url")
SORTS = {"name", "created_at", "updated_at", "file_size"}
FEW = 2000


def set_tags(session: AsyncSession, adapter: Adapter, tags: list[str]) -> None:
    """Add the tag rows of a new adapter (tags already de-duplicated case-insensitively)."""
    adapter.tags = tags
    for tag in tags:
        session.add(
            AdapterTag(
                adapter_id=adapter.id, tag_norm=tag.casefold()[:255], tag=tag[:255], name_key=adapter.name.lower()
            )
        )


async def replace_tags(session: AsyncSession, adapter: Adapter, tags: list[str]) -> None:
    await session.execute(delete(AdapterTag).where(AdapterTag.adapter_id == adapter.id))
    await session.flush()
    set_tags(session, adapter, tags)


def _version_key(version: str | None) -> str:
    return version or ""


async def name_taken(session: AsyncSession, name: str, version: str | None, exclude: str | None = None) -> bool:
    stmt = select(Adapter.id).where(Adapter.name == name, Adapter.version_key == _version_key(version))
    if exclude:
        stmt = stmt.where(Adapter.id != exclude)
    return (await session.scalar(stmt.limit(1))) is not None


def _read_file(cfg: LoraSettings, path: Path) -> dict[str, Any]:
    try:
        facts = read_facts(path, max_header=cfg.max_header_bytes)
    except InvalidAdapterFile as exc:
        raise LoraError(400, str(exc)) from None
    return adapter_fields(facts)


def fill_adapter(adapter: Adapter, values: dict[str, Any]) -> None:
    for key, value in values.items():
        setattr(adapter, key, value)
    adapter.version_key = _version_key(adapter.version)
    adapter.search_text = search_text(adapter)


def _checked_create(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise LoraError(400, "Request body must be a JSON object")
    name = check_text("name", body.get("name"), nullable=False, limit=512)
    if not name or not name.strip():
        raise LoraError(400, "name must be a non-empty string")
    if not isinstance(body.get("file_path"), str):
        raise LoraError(400, "file_path must be a string")
    values: dict[str, Any] = {"name": name.strip()}
    for key, value in body.items():
        if key in ("name", "file_path") or value is None and key not in ("ordinal",):
            continue
        if key in CREATE_TEXT:
            values[key] = check_text(key, value, limit=512)
        elif key in ("stats", "extra"):
            if not isinstance(value, dict):
                raise LoraError(400, f"{key} must be an object")
            values[key] = value
        elif key == "published_at":
            try:
                values[key] = datetime.fromisoformat(check_text(key, value, limit=64) or "")
            except ValueError:
                raise LoraError(400, "published_at must be an ISO 8601 timestamp") from None
        elif key in (
            "weight",
            "active",
            "ordinal",
            "tags",
            "description",
            "activation_text",
            "trained_words",
            "triggers",
            "archetype",
            "archetype_confidence",
            "visibility",
            "nsfw_level",
            "supports_generation",
            "sd_version",
        ):
            values[key] = check_field(key, value)
    return values


async def create_adapter(session: AsyncSession, cfg: LoraSettings, body: Any) -> Adapter:
    values = _checked_create(body)
    path = paths.adapter_file(cfg, body["file_path"])
    derived = await asyncio.to_thread(_read_file, cfg, path)
    derived.pop("title", None)
    if await name_taken(session, values["name"], values.get("version")):
        raise LoraError(400, "adapter with this name and version already exists")
    now = utcnow()
    adapter = Adapter(
        file_path=str(path),
        created_at=now,
        updated_at=now,
        last_ingested_at=now,
        tags=[],
        trained_words=[],
        triggers=[],
        stats={},
        extra={},
        weight=1.0,
        active=False,
        visibility="Public",
        nsfw_level=0,
        supports_generation=False,
    )
    session.add(adapter)
    tags = values.pop("tags", None)
    fill_adapter(adapter, {**{k: v for k, v in derived.items() if v not in (None, [], {})}, **values})
    await session.flush()
    set_tags(session, adapter, tags if tags is not None else unique_words(derived.get("tags") or []))
    adapter.search_text = search_text(adapter)
    await session.commit()
    return adapter


async def get_adapter(session: AsyncSession, adapter_id: str) -> Adapter:
    adapter = await session.get(Adapter, adapter_id)
    if adapter is None:
        raise not_found("adapter")
    return adapter


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


async def patch_adapter(session: AsyncSession, adapter_id: str, body: Any) -> Adapter:
    values = check_patch(body)
    adapter = await get_adapter(session, adapter_id)
    tags = values.pop("tags", None)
    for key, value in values.items():
        setattr(adapter, key, value)
    if tags is not None:
        await replace_tags(session, adapter, tags)
    adapter.updated_at = utcnow()
    adapter.search_text = search_text(adapter)
    await session.commit()
    return adapter


async def delete_adapter(session: AsyncSession, adapter_id: str) -> None:
    adapter = await get_adapter(session, adapter_id)
    await session.execute(delete(AdapterTag).where(AdapterTag.adapter_id == adapter.id))
    await session.delete(adapter)
    await session.commit()


async def set_active(session: AsyncSession, adapter_id: str, active: bool, ordinal: int | None = None) -> Adapter:
    adapter = await get_adapter(session, adapter_id)
    adapter.active = active
    if active and ordinal is not None:
        adapter.ordinal = ordinal
    adapter.updated_at = utcnow()
    await session.commit()
    return adapter


async def bulk(session: AsyncSession, action: str, ids: list[str]) -> dict[str, Any]:
    ids = list(dict.fromkeys(i.strip() for i in ids if isinstance(i, str) and i.strip()))
    if not ids:
        return {"success": True, "processed": 0, "action": action, "ids": []}
    found = list((await session.scalars(select(Adapter.id).where(Adapter.id.in_(ids)))).all())
    try:
        if action == "delete":
            await session.execute(delete(AdapterTag).where(AdapterTag.adapter_id.in_(found)))
            await session.execute(delete(Adapter).where(Adapter.id.in_(found)))
        else:
            await session.execute(
                update(Adapter).where(Adapter.id.in_(found)).values(active=action == "activate", updated_at=utcnow())
            )
        await session.commit()
    except Exception:
        await session.rollback()
        raise
    return {"success": True, "action": action, "processed": len(found), "ids": [i for i in ids if i in set(found)]}


async def all_tags(session: AsyncSession) -> list[str]:
    rows = await session.execute(select(func.min(AdapterTag.tag)).group_by(AdapterTag.tag_norm))
    return sorted((r[0] for r in rows), key=lambda t: (t.casefold(), t))
