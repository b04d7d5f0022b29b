"""Robotics HTTP routes, part 1: health, assets, tags, jobs (part 2: `routes_conversions.py`).

Routers only parse, call a service function and shape the answer; errors are raised as
`RoboticsError` and rendered as `{"detail": "..."}` by the handler `install()` registers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from kiln.apps.robotics import jobs_service
from kiln.apps.robotics.assets import dialog
from kiln.apps.robotics.assets import service as assets_service
from kiln.apps.robotics.assets import tags as tags_service
from kiln.apps.robotics.config import recording_roots, robotics_settings
from kiln.apps.robotics.conversion.router import RoboticsSettingsDep
from kiln.apps.robotics.conversion.router import router as conversions_router
from kiln.apps.robotics.schemas import AttachTagRequest, CreateTagRequest, RegisterAssetRequest, ScanDirectoryRequest
from kiln.apps.robotics.views import asset_summary, job_view
from kiln.core.auth.deps import OpenSurfaceGuard
from kiln.core.deps import KernelDep, SessionDep, SettingsDep
from kiln.core.errors import MESSAGE_OR_VALIDATION_422
from kiln.core.params import Offset


async def _apply_read_limits(kernel: KernelDep) -> None:
    """Readers in this process bound chunk sizes by KILN_ROBOTICS_MAX_CHUNK_MB."""
    robotics_settings(kernel).apply_read_limits()


router = APIRouter(
    dependencies=[OpenSurfaceGuard, Depends(_apply_read_limits)], tags=["robotics"], responses=MESSAGE_OR_VALIDATION_422
)
router.include_router(conversions_router)


def _roots(kernel: KernelDep) -> list[Path]:
    return recording_roots(kernel)


RootsDep = Annotated[list[Path], Depends(_roots)]


@router.get("/health")
async def health(cfg: RoboticsSettingsDep) -> dict[str, str]:
    return {"status": "ok", "app_name": cfg.app_name}


# ------------------------------------------------------------------------------ assets
@router.post("/assets/register", status_code=201)
async def register_asset(body: RegisterAssetRequest, session: SessionDep, roots: RootsDep) -> dict[str, Any]:
    return asset_summary(await assets_service.register_path(session, body.file_path, roots))


@router.post("/assets/upload", status_code=201)
async def upload_asset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    x_file_name: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    name = assets_service.upload_name(x_file_name)
    asset = await assets_service.upload(session, settings.home, name, request.stream())
    return asset_summary(asset)


@router.post("/assets/register-dialog", responses={503: {"description": "No display for a file dialog"}})
async def register_dialog(session: SessionDep, roots: RootsDep) -> dict[str, Any]:
    chosen = await dialog.pick_files()
    if chosen is None:
        return {"canceled": True, "registered_assets": [], "skipped": []}
    registered, skipped = await assets_service.register_many(session, chosen, roots, source="dialog")
    return {"canceled": False, "registered_assets": [asset_summary(a) for a in registered], "skipped": skipped}


@router.post("/assets/scan-directory")
async def scan_directory(
    body: ScanDirectoryRequest, session: SessionDep, roots: RootsDep, cfg: RoboticsSettingsDep
) -> dict[str, Any]:
    return await assets_service.scan_directory(
        session, body.directory_path, body.recursive, roots, cfg.scan_max_entries
    )


@router.post("/assets/reindex-all")
async def reindex_all(session: SessionDep, kernel: KernelDep, cfg: RoboticsSettingsDep) -> dict[str, Any]:
    return await jobs_service.reindex_all(session, kernel, cfg)


@router.post("/assets/{asset_id}/index")
async def index_asset(
    asset_id: str, session: SessionDep, kernel: KernelDep, cfg: RoboticsSettingsDep
) -> dict[str, Any]:
    return await jobs_service.index_asset(session, kernel, cfg, asset_id)


@router.post("/assets/{asset_id}/tags")
async def attach_tag(asset_id: str, body: AttachTagRequest, session: SessionDep) -> dict[str, Any]:
    await tags_service.attach_tag(session, asset_id, body.tag_id)
    return await assets_service.asset_detail(session, asset_id)


@router.delete("/assets/{asset_id}/tags/{tag_id}")
async def detach_tag(asset_id: str, tag_id: str, session: SessionDep) -> dict[str, Any]:
    await tags_service.detach_tag(session, asset_id, tag_id)
    return await assets_service.asset_detail(session, asset_id)


@router.get("/assets")
async def list_assets(request: Request, session: SessionDep) -> list[dict[str, Any]]:
    filters = assets_service.parse_asset_filters(dict(request.query_params))
    return await assets_service.list_assets(session, filters)


@router.get("/assets/{asset_id}")
async def get_asset(asset_id: str, session: SessionDep) -> dict[str, Any]:
    return await assets_service.asset_detail(session, asset_id)


# ------------------------------------------------------------------------------ tags
@router.get("/tags")
async def list_tags(session: SessionDep) -> list[dict[str, Any]]:
    return await tags_service.list_tags(session)


@router.post("/tags", status_code=201)
async def create_tag(body: CreateTagRequest, session: SessionDep) -> dict[str, Any]:
    return await tags_service.create_tag(session, body.name)


# ------------------------------------------------------------------------------ jobs
@router.get("/jobs")
async def list_jobs(
    session: SessionDep,
    type: Annotated[str | None, Query(description="index | convert")] = None,  # noqa: A002 - contract name
    status: Annotated[str | None, Query(description="queued | running | succeeded | failed | cancelled")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    return await jobs_service.list_jobs(session, type, status, limit, offset)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, session: SessionDep) -> dict[str, Any]:
    return job_view(await jobs_service.get_job(session, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await jobs_service.cancel_job(session, kernel.jobs, job_id)


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await jobs_service.retry_job(session, kernel.jobs, job_id)
