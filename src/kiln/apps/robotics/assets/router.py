"""Asset routes: register (path, upload, picker, directory scan), index, list and read assets; tags."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from kiln.apps.robotics import jobs_service
from kiln.apps.robotics.assets import dialog, registration
from kiln.apps.robotics.assets import service as assets_service
from kiln.apps.robotics.assets import tags as tags_service
from kiln.apps.robotics.deps import RecordingRootsDep, RoboticsSettingsDep
from kiln.apps.robotics.schemas import AttachTagRequest, CreateTagRequest, RegisterAssetRequest, ScanDirectoryRequest
from kiln.apps.robotics.views import asset_summary
from kiln.core.deps import KernelDep, SessionDep, SettingsDep

router = APIRouter()


# ------------------------------------------------------------------------------ assets
@router.post("/assets/register", status_code=201)
async def register_asset(body: RegisterAssetRequest, session: SessionDep, roots: RecordingRootsDep) -> dict[str, Any]:
    return asset_summary(await registration.register_path(session, body.file_path, roots))


@router.post("/assets/upload", status_code=201)
async def upload_asset(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    x_file_name: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    name = registration.upload_name(x_file_name)
    asset = await registration.upload(session, settings.home, name, request.stream())
    return asset_summary(asset)


@router.post("/assets/register-dialog", responses={503: {"description": "No display for a file dialog"}})
async def register_dialog(session: SessionDep, roots: RecordingRootsDep) -> dict[str, Any]:
    chosen = await dialog.pick_files()
    if chosen is None:
        return {"canceled": True, "registered_assets": [], "skipped": []}
    registered, skipped = await registration.register_many(session, chosen, roots, source="dialog")
    return {"canceled": False, "registered_assets": [asset_summary(a) for a in registered], "skipped": skipped}


@router.post("/assets/scan-directory")
async def scan_directory(
    body: ScanDirectoryRequest, session: SessionDep, roots: RecordingRootsDep, cfg: RoboticsSettingsDep
) -> dict[str, Any]:
    return await registration.scan_directory(session, body.directory_path, body.recursive, roots, cfg.scan_max_entries)


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
