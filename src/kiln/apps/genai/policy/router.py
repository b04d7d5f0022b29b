"""`/v1/policy/rules` (superadmin)."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Query

from kiln.apps.genai.deps import SessionDep, SuperadminUser
from kiln.apps.genai.errors import genai_router
from kiln.apps.genai.policy import service

router = genai_router(tags=["genai"])


@router.post("/v1/policy/rules", status_code=201)
async def create_rule(
    user: SuperadminUser, session: SessionDep, body: dict[str, Any] = Body(default_factory=dict)
) -> dict[str, Any]:
    row = await service.create_rule(session, body, user.id)
    await session.commit()
    return {"rule": service.rule_dto(row)}


@router.get("/v1/policy/rules")
async def list_rules(
    user: SuperadminUser,
    session: SessionDep,
    scope_type: str | None = Query(default=None, max_length=16),
    scope_id: str | None = Query(default=None, max_length=64),
    resource_id: str | None = Query(default=None, max_length=200),
) -> dict[str, Any]:
    return {
        "rules": [service.rule_dto(r) for r in await service.list_rules(session, scope_type, scope_id, resource_id)]
    }
