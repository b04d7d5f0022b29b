"""Adapter records: create from a file, patch, delete, activate/deactivate, bulk actions in one
transaction, the tag list. Plain functions on a session. Listing is `library/listing.py`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.errors import LoraError, not_found
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts
from kiln.apps.lora.library.values import (
    PATCHABLE,
    check_field,
    check_patch,
    check_text,
    search_text,
    unique_words,
)
from kiln.apps.lora.models import Adapter, AdapterTag
from kiln.core.db import utcnow

CREATE_TEXT = ("version", "canonical_version_name", "author_username", "primary_file_download_url")


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


def new_adapter(now: datetime, **columns: Any) -> Adapter:
    """A new adapter row with the library's defaults (inactive, public, weight 1, no tags)."""
    return Adapter(
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
        **columns,
    )


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
        elif key in PATCHABLE:
            values[key] = check_field(key, value)
    return values


async def create_adapter(session: AsyncSession, cfg: LoraSettings, body: Any) -> Adapter:
    values = _checked_create(body)
    path = paths.adapter_file(cfg, body["file_path"])
    derived = await asyncio.to_thread(_read_file, cfg, path)
    derived.pop("title", None)
    if await name_taken(session, values["name"], values.get("version")):
        raise LoraError(400, "adapter with this name and version already exists")
    adapter = new_adapter(utcnow(), file_path=str(path))
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
