"""`/v1/catalog/agents|tools`: superadmin, except `DELETE` of an agent (its owner or a superadmin)."""

from __future__ import annotations

from typing import Any

from fastapi import Body

from kiln.apps.genai.catalog import service
from kiln.apps.genai.deps import CurrentUser, SessionDep, SuperadminUser
from kiln.apps.genai.errors import genai_router

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)
KINDS = {"agents": ("agent", "agents"), "tools": ("tool", "tools")}


def _routes(plural: str) -> None:
    kind, _ = KINDS[plural]
    single = kind

    @router.get(f"/v1/catalog/{plural}", name=f"catalog_list_{plural}")
    async def list_items(user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
        return {plural: await service.list_items(session, kind)}

    @router.post(f"/v1/catalog/{plural}", status_code=201, name=f"catalog_create_{plural}")
    async def create_item(user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
        entity, version = await service.create_item(session, user, kind, body)
        await session.commit()
        return {single: service.item_dto(entity, version)}

    @router.get(f"/v1/catalog/{plural}/{{item_id}}", name=f"catalog_get_{plural}")
    async def get_item(item_id: str, user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
        entity, version = await service.get_item(session, user, kind, item_id)
        return {single: service.item_dto(entity, version)}

    @router.put(f"/v1/catalog/{plural}/{{item_id}}", name=f"catalog_update_{plural}")
    async def update_item(
        item_id: str, user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody
    ) -> dict[str, Any]:
        entity, version = await service.update_item(session, user, kind, item_id, body)
        await session.commit()
        return {single: service.item_dto(entity, version)}

    @router.post(f"/v1/catalog/{plural}/{{item_id}}/validate", name=f"catalog_validate_{plural}")
    async def validate_item(item_id: str, user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
        entity, version = await service.get_item(session, user, kind, item_id)
        spec = version.spec if version else {}
        return {
            single: service.item_dto(entity, version),
            "validation": await service.validate_item(session, kind, spec),
        }


_routes("agents")
_routes("tools")


@router.delete("/v1/catalog/agents/{agent_id}")
async def delete_agent(agent_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    await service.delete_agent(session, user, agent_id)
    await session.commit()
    return {"deleted": True, "agent_id": agent_id}
