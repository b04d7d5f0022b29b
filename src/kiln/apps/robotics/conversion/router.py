"""Conversion routes: start, list and read conversions, the spec capabilities, and the
outputs they wrote (content served with HTTP Range)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from kiln.apps.robotics.common import NotFound
from kiln.apps.robotics.conversion import outputs as outputs_service
from kiln.apps.robotics.conversion import service as conversions_service
from kiln.apps.robotics.deps import RoboticsSettingsDep
from kiln.apps.robotics.schemas import ConversionCreateRequest
from kiln.core.deps import KernelDep, RootPathDep, SessionDep
from kiln.core.files import range_response

router = APIRouter()


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


@router.get("/conversions/{conversion_id}")
async def get_conversion(conversion_id: str, session: SessionDep) -> dict[str, Any]:
    return await conversions_service.conversion_detail(session, conversion_id)


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
