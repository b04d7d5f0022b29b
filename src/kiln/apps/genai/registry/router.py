"""`/v1/registry/{agents|tools}*` (any user; visibility enforced) and `/v1/registry/models*` (superadmin)."""

from __future__ import annotations

from typing import Any

from fastapi import Body

from kiln.apps.genai.deps import CurrentUser, SessionDep
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.registry import service
from kiln.core.auth import User

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)


def _kind(entity_type: str, user: User) -> str:
    kind = service.entity_type_of(entity_type)
    if kind == "model" and user.role != "superadmin":
        raise GenaiError(
            403, "insufficient_role", "Requires role superadmin or higher", {"required_role": "superadmin"}
        )
    return kind


@router.get("/v1/registry/{entity_type}")
async def list_entities(entity_type: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"items": await service.list_entities(session, user, _kind(entity_type, user))}


@router.post("/v1/registry/{entity_type}", status_code=201)
async def create_entity(
    entity_type: str, user: CurrentUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    entity, version = await service.create_entity(session, user, _kind(entity_type, user), body)
    await session.commit()
    return {"entity": service.entity_dto(entity, version), "version": service.version_dto(version)}


@router.get("/v1/registry/{entity_type}/{entity_id}")
async def get_entity(entity_type: str, entity_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    entity = await service.get_entity(session, user, _kind(entity_type, user), entity_id)
    current = await service.current_version(session, entity.entity_id)
    return {
        "entity": service.entity_dto(entity, current),
        "versions": [service.version_dto(v) for v in await service.versions(session, entity.entity_id)],
    }


@router.post("/v1/registry/{entity_type}/{entity_id}/versions", status_code=201)
async def create_version(
    entity_type: str, entity_id: str, user: CurrentUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    entity = await service.get_entity(session, user, _kind(entity_type, user), entity_id)
    version = await service.create_version(session, user, entity, body)
    await session.commit()
    return {"entity": service.entity_dto(entity, version), "version": service.version_dto(version)}


@router.post("/v1/registry/{entity_type}/{entity_id}/share", status_code=201)
async def share_entity(
    entity_type: str, entity_id: str, user: CurrentUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    entity = await service.get_entity(session, user, _kind(entity_type, user), entity_id)
    row = await service.share(session, user, entity, body)
    await session.commit()
    return {"share": service.share_dto(row)}


@router.get("/v1/registry/{entity_type}/{entity_id}/shares")
async def list_shares(entity_type: str, entity_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    entity = await service.get_entity(session, user, _kind(entity_type, user), entity_id)
    if not service.can_manage(user, entity):
        raise GenaiError(403, "policy_denied", "Only entity owner or superadmin can list shares")
    return {"shares": [service.share_dto(s) for s in await service.shares(session, entity.entity_id)]}
