"""Import into the database (one transaction per archive) and backups (created by a job)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.archive import importer
from kiln.apps.lora.archive.export import human_size, stream_archive, views_of
from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.errors import LoraError, not_found
from kiln.apps.lora.library.service import (
    _checked_create,
    fill_adapter,
    name_taken,
    new_adapter,
    replace_tags,
    set_tags,
)
from kiln.apps.lora.library.values import ARCHIVE_FIELDS, unique_words
from kiln.apps.lora.models import Adapter, Backup
from kiln.core.db import utcnow
from kiln.core.jobs import JobContext, job_handler

DRY_RUN = ("dry-run", "dryrun", "preview")
CONFLICTS = ("skip", "overwrite", "rename", "ask")


def _values(meta: dict[str, Any], extracted: dict[str, Any]) -> dict[str, Any]:
    """Checked adapter values from archive metadata; files only from what was extracted."""
    allowed = {k: v for k, v in meta.items() if k in ARCHIVE_FIELDS}
    values = _checked_create({**allowed, "file_path": extracted["file_path"]})
    derived = {k: v for k, v in extracted.items() if k != "title" and v not in (None, [], {})}
    return {**derived, **values}


async def _save(session: AsyncSession, items: list[importer.Planned], conflict: str) -> list[dict[str, Any]]:
    out = []
    now = utcnow()
    for item in items:
        values = _values(item.metadata, item.extracted)
        tags = unique_words(values.pop("tags", None) or [])
        existing = await session.scalar(
            select(Adapter).where(Adapter.name == values["name"], Adapter.version_key == (values.get("version") or ""))
        )
        if existing is not None and conflict in ("skip", "ask"):
            out.append({"id": existing.id, "name": existing.name, "status": "skipped"})
            continue
        if existing is not None and conflict == "overwrite":
            fill_adapter(existing, {**values, "updated_at": now, "last_ingested_at": now})
            await replace_tags(session, existing, tags)
            fill_adapter(existing, {})
            out.append({"id": existing.id, "name": existing.name, "status": "updated"})
            continue
        if existing is not None:
            base, n = values["name"], 2
            while await name_taken(session, f"{base} ({n})", values.get("version")):
                n += 1
            values["name"] = f"{base} ({n})"
        adapter = new_adapter(now)
        fill_adapter(adapter, values)
        session.add(adapter)
        await session.flush()
        set_tags(session, adapter, tags)
        fill_adapter(adapter, {})
        out.append({"id": adapter.id, "name": adapter.name, "status": "created"})
    await session.commit()
    return out


async def import_archive(
    session: AsyncSession,
    cfg: LoraSettings,
    path: Path | IO[bytes],
    label: str,
    *,
    mode: str = "merge",
    conflict: str = "skip",
    validate: bool = True,
) -> dict[str, Any]:
    items: list[importer.Planned] = []
    try:
        zf = await asyncio.to_thread(importer.open_zip, path)
        with zf:
            items = await asyncio.to_thread(importer.plan, zf, cfg)
            if mode in DRY_RUN:
                return {
                    "file": label,
                    "status": "validated",
                    "created": 0,
                    "updated": 0,
                    "adapters": [{"id": i.entry_id, "name": i.metadata["name"], "status": "valid"} for i in items],
                }
            for item in items:
                await asyncio.to_thread(importer.extract, zf, cfg, item)
        adapters = await _save(session, items, conflict)
    except (importer.ArchiveError, LoraError) as exc:
        await session.rollback()
        await asyncio.to_thread(importer.remove_extracted, cfg, items)
        detail = exc.title if isinstance(exc, LoraError) else str(exc)
        return {"file": label, "status": "error", "detail": detail}
    return {
        "file": label,
        "status": "imported",
        "created": sum(a["status"] == "created" for a in adapters),
        "updated": sum(a["status"] == "updated" for a in adapters),
        "adapters": adapters,
    }


# ------------------------------------------------------------------------------ backups
def backup_view(b: Backup) -> dict[str, Any]:
    return {
        "id": b.id,
        "created_at": b.created_at.isoformat(),
        "type": b.backup_type,
        "size": b.size,
        "size_label": human_size(b.size),
        "status": b.status,
        "error": b.error,
    }


async def create_backup(session: AsyncSession, kernel: Any, backup_type: str) -> dict[str, Any]:
    now = utcnow()
    backup_id = f"backup_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"
    job = await kernel.jobs.create(session, "lora.backup", {"backup_id": backup_id})
    backup = Backup(
        id=backup_id,
        backup_type=backup_type.title()[:32],
        status="running",
        size=0,
        blob_key=f"lora/backups/{backup_id}.zip",
        job_id=job.id,
        created_at=now,
    )
    session.add(backup)
    await session.commit()
    await kernel.jobs.kick(job.id)
    return {
        "success": True,
        "backup_id": backup_id,
        "type": backup.backup_type,
        "status": backup.status,
        "size": 0,
        "created_at": now.isoformat(),
        "job_id": job.id,
    }


async def _set_backup(ctx: JobContext, backup_id: str, **values: Any) -> None:
    async with ctx.session() as session:
        backup = await session.get(Backup, backup_id)
        if backup is not None:
            for key, value in values.items():
                setattr(backup, key, value)
            await session.commit()


@job_handler("lora.backup", surface="lora", max_attempts=1)
async def backup_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Write a full export of the library to the BlobStore; the backup row follows the outcome."""
    backup_id = payload["backup_id"]
    async with ctx.session() as session:
        views = views_of((await session.scalars(select(Adapter).order_by(Adapter.name, Adapter.id))).all())
    try:
        info = await ctx.kernel.blobs.write_stream(f"lora/backups/{backup_id}.zip", stream_archive(views))
    except Exception as exc:
        await _set_backup(ctx, backup_id, status="failed", error=str(exc)[:500])
        raise
    await _set_backup(ctx, backup_id, status="completed", size=info.size)
    return {"backup_id": backup_id, "size": info.size, "adapters": len(views)}


async def delete_backup(session: AsyncSession, kernel: Any, backup_id: str) -> None:
    backup = await session.get(Backup, backup_id)
    if backup is None:
        raise not_found("Backup")
    if backup.blob_key:
        await kernel.blobs.delete(backup.blob_key)
    await session.delete(backup)
    await session.commit()


async def restore_backup(session: AsyncSession, kernel: Any, backup_id: str, conflict: str) -> dict[str, Any]:
    backup = await session.get(Backup, backup_id)
    if backup is None:
        raise not_found("Backup")
    if backup.status != "completed" or not backup.blob_key:
        raise LoraError(400, "Backup is not complete")
    cfg = lora_settings(kernel)
    local = kernel.blobs.local_path(backup.blob_key)
    if local is not None:
        return await import_archive(session, cfg, local, backup.id + ".zip", conflict=conflict)
    tmp = cfg.allowed_roots()[0] / "imports" / f".restore-{backup.id}.zip"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        fh = await asyncio.to_thread(tmp.open, "wb")
        try:
            async for chunk in kernel.blobs.read_stream(backup.blob_key):
                await asyncio.to_thread(fh.write, chunk)
        finally:
            fh.close()
        return await import_archive(session, cfg, tmp, backup.id + ".zip", conflict=conflict)
    finally:
        tmp.unlink(missing_ok=True)
