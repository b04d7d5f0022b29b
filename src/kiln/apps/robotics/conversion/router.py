"""Robotics HTTP routes, part 2: conversions and authoring, saved configs, outputs, dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from kiln.apps.robotics.authoring import configs as configs_service
from kiln.apps.robotics.authoring import service as authoring_service
from kiln.apps.robotics.common import NotFound
from kiln.apps.robotics.config import RoboticsSettings, reading_roots, robotics_settings
from kiln.apps.robotics.conversion import outputs as outputs_service
from kiln.apps.robotics.conversion import service as conversions_service
from kiln.apps.robotics.dashboard import service as dashboard_service
from kiln.apps.robotics.schemas import (
    ConfigCreateRequest,
    ConfigDuplicateRequest,
    ConfigUpdateRequest,
    ConversionCreateRequest,
    DraftRequest,
    InspectRequest,
    PreviewRequest,
)
from kiln.core.deps import KernelDep, RootPathDep, SessionDep
from kiln.core.files import range_response

router = APIRouter()


def _robotics_settings(kernel: KernelDep) -> RoboticsSettings:
    return robotics_settings(kernel)


RoboticsSettingsDep = Annotated[RoboticsSettings, Depends(_robotics_settings)]


def _reading_roots(kernel: KernelDep) -> list[Path]:
    return reading_roots(kernel)


ReadingRootsDep = Annotated[list[Path], Depends(_reading_roots)]


# ------------------------------------------------------------------------------ conversions
@router.post("/conversions", status_code=201)
async def create_conversion(
    body: ConversionCreateRequest, session: SessionDep, kernel: KernelDep, cfg: RoboticsSettingsDep
) -> dict[str, Any]:
    return await conversions_service.start_conversion(session, kernel, cfg, body)


@router.get("/conversions")
async def list_conversions(
    session: SessionDep, image_payload_contract: str | None = None, legacy_compatible: str | None = None
) -> list[dict[str, Any]]:
    return await conversions_service.list_conversions(session, image_payload_contract, legacy_compatible)


@router.get("/conversions/capabilities")
async def capabilities() -> dict[str, Any]:
    return conversions_service.capabilities()


@router.post("/conversions/inspect")
async def inspect(body: InspectRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.inspect(session, body, roots)


@router.post("/conversions/draft")
async def draft(body: DraftRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.draft(session, body, roots)


@router.post("/conversions/preview")
async def preview(body: PreviewRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.preview(session, body, roots)


@router.get("/conversions/{conversion_id}")
async def get_conversion(conversion_id: str, session: SessionDep) -> dict[str, Any]:
    return await conversions_service.conversion_detail(session, conversion_id)


# ------------------------------------------------------------------------------ saved configs
@router.get("/conversion-configs")
async def list_configs(session: SessionDep) -> list[dict[str, Any]]:
    return await configs_service.list_configs(session)


@router.post("/conversion-configs", status_code=201)
async def create_config(body: ConfigCreateRequest, session: SessionDep) -> dict[str, Any]:
    cfg = await configs_service.create_config(
        session, body.name, body.description, body.metadata, body.spec, body.draft_revision_id
    )
    return await configs_service.config_detail(session, cfg)


@router.get("/conversion-configs/{config_id}")
async def get_config(config_id: str, session: SessionDep) -> dict[str, Any]:
    return await configs_service.open_config(session, config_id)


@router.patch("/conversion-configs/{config_id}")
async def update_config(config_id: str, body: ConfigUpdateRequest, session: SessionDep) -> dict[str, Any]:
    cfg = await configs_service.update_config(session, config_id, body.model_dump(exclude_unset=True))
    return await configs_service.config_detail(session, cfg)


@router.post("/conversion-configs/{config_id}/duplicate", status_code=201)
async def duplicate_config(
    config_id: str, session: SessionDep, body: ConfigDuplicateRequest | None = None
) -> dict[str, Any]:
    body = body or ConfigDuplicateRequest()
    cfg = await configs_service.duplicate_config(session, config_id, body.name, body.description, body.metadata)
    return await configs_service.config_detail(session, cfg)


# ------------------------------------------------------------------------------ outputs
@router.get("/outputs")
async def list_outputs(request: Request, session: SessionDep, base: RootPathDep) -> list[dict[str, Any]]:
    return await outputs_service.list_outputs(session, dict(request.query_params), base)


@router.get("/outputs/{output_id}")
async def get_output(output_id: str, session: SessionDep, base: RootPathDep) -> dict[str, Any]:
    return await outputs_service.output_detail_by_id(session, output_id, base)


@router.get("/outputs/{output_id}/content")
async def output_content(output_id: str, request: Request, session: SessionDep) -> Response:
    path, media_type, name = await outputs_service.content_source(session, output_id)
    try:
        return await range_response(request, path, media_type, filename=name)
    except FileNotFoundError:  # deleted between the check and the read
        raise NotFound(f"output artifact content is unavailable: {output_id}") from None


# ------------------------------------------------------------------------------ dashboard
@router.get("/dashboard/summary")
async def dashboard_summary(session: SessionDep) -> dict[str, Any]:
    return await dashboard_service.summary(session)


@router.get("/dashboard/trends")
async def dashboard_trends(request: Request, session: SessionDep) -> dict[str, Any]:
    days = dashboard_service.parse_days(request.query_params.get("days"))
    return await dashboard_service.trends(session, days)


@router.get("/dashboard/blockers")
async def dashboard_blockers(session: SessionDep) -> dict[str, int]:
    return await dashboard_service.blockers(session)
