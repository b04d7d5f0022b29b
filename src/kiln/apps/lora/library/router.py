"""Adapter routes (`/adapters...`): CRUD, search, activation, bulk, tags, directory scan."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, Field

from kiln.apps.lora.deps import LoraSettingsDep
from kiln.apps.lora.errors import LoraError, LoraRoute, not_found
from kiln.apps.lora.library import listing, paths, service
from kiln.apps.lora.library.values import adapter_view, check_int
from kiln.core.deps import KernelDep, SessionDep

router = APIRouter(route_class=LoraRoute, tags=["lora: adapters"])


class BulkRequest(BaseModel):
    action: Literal["activate", "deactivate", "delete"]
    lora_ids: list[str] = Field(default_factory=list, max_length=10_000)


class ScanRequest(BaseModel):
    directory: str | None = Field(default=None, max_length=4096)
    recursive: bool = True


def _wrap(adapter: Any) -> dict[str, Any]:
    return {"adapter": adapter_view(adapter)}


def _wrap_flat(adapter: Any) -> dict[str, Any]:
    """`{"adapter": ...}` as the contract says, plus the fields at the top level: the SPA reads
    the answers of PATCH, activate and deactivate as a bare adapter."""
    view = adapter_view(adapter)
    return {**view, "adapter": view}


@router.post("/adapters", status_code=201)
async def create_adapter(session: SessionDep, cfg: LoraSettingsDep, body: Annotated[Any, Body()]) -> dict[str, Any]:
    return _wrap(await service.create_adapter(session, cfg, body))


@router.get("/adapters")
async def list_adapters(
    session: SessionDep,
    cfg: LoraSettingsDep,
    search: Annotated[str, Query(max_length=500)] = "",
    active_only: bool | None = None,
    active: bool | None = None,
    tags: Annotated[str | None, Query(max_length=5000)] = None,
    sort: Annotated[str, Query(max_length=32)] = "name",
    page: int = 1,
    per_page: int = 24,
) -> Response:
    result = await listing.list_adapters(
        session,
        search=search,
        active_only=active_only if active_only is not None else active,
        tags=listing.parse_tags(tags),
        sort=sort,
        page=page,
        per_page=per_page,
        max_per_page=cfg.max_per_page,
    )
    result["items"] = [adapter_view(a) for a in result["items"]]
    return Response(json.dumps(result, separators=(",", ":")), media_type="application/json")


@router.get("/adapters/tags")
async def list_tags(session: SessionDep) -> dict[str, list[str]]:
    return {"tags": await service.all_tags(session)}


@router.post("/adapters/bulk")
async def bulk(body: BulkRequest, session: SessionDep) -> dict[str, Any]:
    return await service.bulk(session, body.action, body.lora_ids)


@router.post("/adapters/scan", status_code=202)
async def scan(body: ScanRequest, kernel: KernelDep, cfg: LoraSettingsDep) -> dict[str, Any]:
    folder = paths.folder(cfg, body.directory)
    job = await kernel.jobs.submit("lora.scan", {"directory": str(folder), "recursive": body.recursive})
    return {"job_id": job.id, "status": job.status}


@router.get("/adapters/scan/{job_id}")
async def scan_status(job_id: str, kernel: KernelDep) -> dict[str, Any]:
    job = await kernel.jobs.get(job_id)
    if job is None or job.kind not in ("lora.scan", "lora.hash"):  # lora.hash: the scan's follow-up
        raise not_found("scan job")
    return {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "message": job.progress_message,
        "result": job.result,
        "error": job.error,
    }


@router.get("/adapters/{adapter_id}")
async def get_adapter(adapter_id: str, session: SessionDep) -> dict[str, Any]:
    return _wrap(await service.get_adapter(session, adapter_id))


@router.patch("/adapters/{adapter_id}")
async def patch_adapter(adapter_id: str, session: SessionDep, body: Annotated[Any, Body()]) -> dict[str, Any]:
    return _wrap_flat(await service.patch_adapter(session, adapter_id, body))


@router.delete("/adapters/{adapter_id}", status_code=204)
async def delete_adapter(adapter_id: str, session: SessionDep) -> Response:
    await service.delete_adapter(session, adapter_id)
    return Response(status_code=204)


@router.post("/adapters/{adapter_id}/activate")
async def activate(adapter_id: str, session: SessionDep, ordinal: str | None = None) -> dict[str, Any]:
    value = None
    if ordinal is not None:
        try:
            value = check_int("ordinal", int(ordinal), -1_000_000, 1_000_000)
        except ValueError:
            raise LoraError(400, "ordinal must be an integer") from None
    return _wrap_flat(await service.set_active(session, adapter_id, True, value))


@router.post("/adapters/{adapter_id}/deactivate")
async def deactivate(adapter_id: str, session: SessionDep) -> dict[str, Any]:
    return _wrap_flat(await service.set_active(session, adapter_id, False))
