"""`/v1/modelops/catalog`, `/v1/modelops/discovery/huggingface*`, `/v1/modelops/downloads*` (superadmin)."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Query
from sqlalchemy import select

from kiln.apps.genai.deps import CurrentUser, GenaiSettingsDep, KernelDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.modelops import discovery, hub, lifecycle
from kiln.apps.genai.modelops.models import GenaiDownload, GenaiModel

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)


def catalog_item(m: GenaiModel) -> dict[str, Any]:
    meta = m.model_metadata or {}
    return {
        "id": m.model_id,
        "name": m.name,
        "provider": m.provider,
        "source_id": m.source_id,
        "local_path": m.local_path,
        "status": m.status,
        "task_key": m.task_key,
        "category": m.category,
        "description": meta.get("description") if isinstance(meta.get("description"), str) else None,
        "metadata": meta,
    }


@router.get("/v1/modelops/catalog")
async def list_catalog(user: SuperadminUser, session: SessionDep, settings: GenaiSettingsDep) -> dict[str, Any]:
    return {"models": [catalog_item(m) for m in await lifecycle.list_models(session, settings, user)]}


@router.post("/v1/modelops/catalog", status_code=201)
async def create_catalog(user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    model = await lifecycle.create_model(session, user, body)
    await session.commit()
    return {"model": catalog_item(model)}


@router.get("/v1/modelops/discovery/cloud")
async def discover_cloud(
    user: CurrentUser,
    session: SessionDep,
    kernel: KernelDep,
    credential_id: str = Query(max_length=64),
    provider: str | None = Query(None, max_length=64),
) -> dict[str, Any]:
    return {"models": await discovery.cloud_models(session, kernel, user, credential_id)}


@router.get("/v1/modelops/local-artifacts")
async def list_local_artifacts(user: SuperadminUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return {"artifacts": await discovery.local_artifacts(session, kernel)}


@router.get("/v1/modelops/discovery/huggingface")
async def discover(
    user: SuperadminUser,
    session: SessionDep,
    kernel: KernelDep,
    query: str | None = Query(default=None, max_length=200),
    limit: int = Query(20, ge=1, le=100),
    task: str | None = Query(default=None, max_length=64),
    task_key: str | None = Query(default=None, max_length=64),
    sort: str = Query(default="downloads", max_length=32),
) -> dict[str, Any]:
    return {"models": await hub.discover(session, kernel, query, limit, task or task_key, sort)}


@router.get("/v1/modelops/discovery/huggingface/{source_id:path}")
async def discover_one(source_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return {"model": await hub.details(session, kernel, source_id)}


async def _dto(kernel: Any, row: GenaiDownload) -> dict[str, Any]:
    job = await kernel.jobs.get(row.job_id) if row.job_id else None
    return hub.download_dto(row, job)


@router.post("/v1/modelops/downloads", status_code=202)
async def start_download(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await hub.start_download(session, kernel, user, body)
    await session.commit()
    await kernel.jobs.kick(row.job_id)
    return {"job": await _dto(kernel, row)}


@router.get("/v1/modelops/downloads")
async def list_downloads(
    user: SuperadminUser,
    session: SessionDep,
    kernel: KernelDep,
    status: str | None = Query(default=None, max_length=16),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    rows = list(
        (await session.execute(select(GenaiDownload).order_by(GenaiDownload.created_at.desc()).limit(limit))).scalars()
    )
    items = [await _dto(kernel, row) for row in rows]
    return {"jobs": [item for item in items if status is None or item["status"] == status]}


async def _download(session: Any, download_id: str) -> GenaiDownload:
    row = await session.get(GenaiDownload, download_id) if len(download_id) <= 64 else None
    if row is None:
        raise GenaiError(404, "download_not_found", "Download job not found")
    return row


@router.get("/v1/modelops/downloads/{download_id}")
async def get_download(
    download_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    return {"job": await _dto(kernel, await _download(session, download_id))}


@router.post("/v1/modelops/downloads/{download_id}/cancel")
async def cancel_download(
    download_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    row = await _download(session, download_id)
    if row.job_id:
        await kernel.jobs.cancel(row.job_id)
    return {"job": await _dto(kernel, row)}
