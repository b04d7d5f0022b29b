"""Export / import / backup routes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.datastructures import UploadFile

from kiln.apps.lora.archive import service
from kiln.apps.lora.archive.export import estimate, stream_archive, views_of
from kiln.apps.lora.deps import LoraSettingsDep
from kiln.apps.lora.errors import LoraError, LoraRoute
from kiln.apps.lora.models import Adapter, Backup
from kiln.core.deps import KernelDep, SessionDep

router = APIRouter(route_class=LoraRoute, tags=["lora: import/export"])
MAX_UPLOADS = 20


class ExportConfig(BaseModel):
    loras: bool = True
    lora_files: bool = True
    lora_ids: list[str] | None = Field(default=None, max_length=100_000)
    format: str = Field(default="zip", max_length=16)


class BackupCreate(BaseModel):
    backup_type: str = Field(default="full", max_length=32)


async def _views(session: Any, config: ExportConfig) -> list[dict[str, Any]]:
    stmt = select(Adapter).order_by(Adapter.name, Adapter.id)
    if config.lora_ids is not None:
        stmt = stmt.where(Adapter.id.in_(config.lora_ids))
    return views_of((await session.scalars(stmt)).all())


@router.post("/export/estimate")
async def export_estimate(config: ExportConfig, session: SessionDep) -> dict[str, Any]:
    if not config.loras:
        return {"size": "0 Bytes", "time": "0 seconds", "bytes": 0}
    size, label, duration = await asyncio.to_thread(estimate, await _views(session, config), config.lora_files)
    return {"size": label, "time": duration, "bytes": size}


@router.post("/export")
async def export(config: ExportConfig, session: SessionDep) -> StreamingResponse:
    if not config.loras or config.format != "zip":
        raise LoraError(400, "Only LoRA exports in zip format are supported")
    views = await _views(session, config)
    name = f"lora_export_{datetime.now(UTC):%Y%m%d_%H%M%S}.zip"
    return StreamingResponse(
        stream_archive(views, include_files=config.lora_files),
        media_type="application/zip",
        headers={"Content-Disposition": f"attachment; filename={name}"},
    )


@router.post("/import")
async def import_archives(request: Request, session: SessionDep, cfg: LoraSettingsDep) -> dict[str, Any]:
    try:
        form = await request.form(max_files=MAX_UPLOADS, max_fields=20)
    except Exception:
        raise LoraError(400, f"Send multipart/form-data with up to {MAX_UPLOADS} 'files'") from None
    raw = form.get("config")
    try:
        config = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError as exc:
        raise LoraError(400, f"Invalid config: {exc.msg}") from None
    if not isinstance(config, dict):
        raise LoraError(400, "Invalid config: must be a JSON object")
    mode = str(config.get("mode") or "merge")
    conflict = str(config.get("conflict_resolution") or "skip")
    if conflict not in service.CONFLICTS:
        raise LoraError(400, f"conflict_resolution must be one of {', '.join(service.CONFLICTS)}")
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise LoraError(400, "No files uploaded")
    results = []
    for upload in files:
        label = (upload.filename or "upload")[:200]
        if upload.size is not None and upload.size > cfg.max_import_bytes:
            results.append({"file": label, "status": "error", "detail": "archive too large"})
            continue
        results.append(await service.import_archive(session, cfg, upload.file, label, mode=mode, conflict=conflict))
    ok = [r for r in results if r["status"] != "error"]
    return {
        "success": len(ok) == len(results),
        "processed_files": len(ok),
        "total_files": len(results),
        "results": results,
    }


@router.get("/backups/history")
async def backups(session: SessionDep) -> list[dict[str, Any]]:
    rows = (await session.scalars(select(Backup).order_by(Backup.created_at.desc(), Backup.id))).all()
    return [service.backup_view(b) for b in rows]


@router.post("/backup/create")
@router.post("/backups/create")
async def create_backup(session: SessionDep, kernel: KernelDep, body: BackupCreate | None = None) -> dict[str, Any]:
    return await service.create_backup(session, kernel, (body or BackupCreate()).backup_type)


@router.delete("/backups/{backup_id}", status_code=204)
async def delete_backup(backup_id: str, session: SessionDep, kernel: KernelDep) -> Response:
    await service.delete_backup(session, kernel, backup_id)
    return Response(status_code=204)


@router.post("/backups/{backup_id}/restore")
async def restore_backup(
    backup_id: str, session: SessionDep, kernel: KernelDep, conflict_resolution: str = "skip"
) -> dict[str, Any]:
    if conflict_resolution not in service.CONFLICTS:
        raise LoraError(400, f"conflict_resolution must be one of {', '.join(service.CONFLICTS)}")
    return await service.restore_backup(session, kernel, backup_id, conflict_resolution)
