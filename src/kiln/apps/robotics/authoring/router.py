"""Authoring routes: inspect a recording, draft and preview a spec, saved conversion configs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kiln.apps.robotics.authoring import configs as configs_service
from kiln.apps.robotics.authoring import service as authoring_service
from kiln.apps.robotics.deps import ReadingRootsDep
from kiln.apps.robotics.schemas import (
    ConfigCreateRequest,
    ConfigDuplicateRequest,
    ConfigUpdateRequest,
    DraftRequest,
    InspectRequest,
    PreviewRequest,
)
from kiln.core.deps import SessionDep

router = APIRouter()


# ------------------------------------------------------------------------------ inspect, draft, preview
@router.post("/conversions/inspect")
async def inspect(body: InspectRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.inspect(session, body, roots)


@router.post("/conversions/draft")
async def draft(body: DraftRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.draft(session, body, roots)


@router.post("/conversions/preview")
async def preview(body: PreviewRequest, session: SessionDep, roots: ReadingRootsDep) -> dict[str, Any]:
    return await authoring_service.preview(session, body, roots)


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
