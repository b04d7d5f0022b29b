"""`/v1/platform/*`: capabilities (any user); everything else superadmin."""

from __future__ import annotations

from typing import Any

from fastapi import Body

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.deps import CurrentUser, KernelDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import genai_router
from kiln.apps.genai.platform import activation, deployments, families, providers, slots

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)


@router.get("/v1/platform/capabilities")
async def list_capabilities(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"capabilities": await activation.capabilities(session)}


@router.get("/v1/platform/provider-families")
async def list_families(user: SuperadminUser) -> dict[str, Any]:
    return {"provider_families": [f.dto() for f in families.FAMILIES.values()]}


@router.get("/v1/platform/providers")
async def list_providers(user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    return {"providers": [providers.provider_dto(p) for p in await providers.list_providers(session)]}


@router.post("/v1/platform/providers", status_code=201)
async def create_provider(user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    row = await providers.create_provider(session, body)
    await session.commit()
    return {"provider": providers.provider_dto(row)}


@router.put("/v1/platform/providers/{provider_id}")
async def update_provider(
    provider_id: str, user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await providers.update_provider(session, provider_id, body)
    await session.commit()
    return {"provider": providers.provider_dto(row)}


@router.delete("/v1/platform/providers/{provider_id}")
async def delete_provider(provider_id: str, user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    await providers.delete_provider(session, provider_id)
    await session.commit()
    return {"deleted": True, "provider_id": provider_id}


@router.post("/v1/platform/providers/{provider_id}/validate")
async def validate_provider(
    provider_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    row = await providers.get_provider(session, provider_id)
    result = await providers.probe(
        session, kernel, row, "provider validation", genai_settings(kernel).preflight_timeout_seconds
    )
    validation: dict[str, Any] = {"health": result["health"]}
    if "models" in result:
        validation["resources_reachable"] = True
        validation["resources"] = [
            {"id": mid, "provider_resource_id": mid, "display_name": mid} for mid in result["models"]
        ]
    if "error" in result:
        validation["error"] = result["error"]
    return {"provider": {"id": row.id, "slug": row.slug}, "validation": validation}


@router.post("/v1/platform/providers/{provider_id}/loaded-model")
async def load_model(
    provider_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await slots.load(session, kernel, provider_id, str(body.get("managed_model_id") or ""))
    await session.commit()
    return {"provider": providers.provider_dto(row)}


@router.delete("/v1/platform/providers/{provider_id}/loaded-model")
async def unload_model(
    provider_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    row = await slots.unload(session, kernel, provider_id)
    await session.commit()
    return {"provider": providers.provider_dto(row)}


@router.get("/v1/platform/deployments")
async def list_deployments(user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    return {"deployments": await deployments.list_deployments(session)}


@router.post("/v1/platform/deployments", status_code=201)
async def create_deployment(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await deployments.create_deployment(session, kernel, body, user.id)
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.get("/v1/platform/deployments/{deployment_id}")
async def get_deployment(deployment_id: str, user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    return {"deployment_profile": await deployments.one_deployment(session, deployment_id)}


@router.patch("/v1/platform/deployments/{deployment_id}")
async def patch_deployment(
    deployment_id: str, user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await deployments.update_identity(session, deployment_id, body, user.id)
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.put("/v1/platform/deployments/{deployment_id}")
async def put_deployment(
    deployment_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await deployments.replace_deployment(session, kernel, deployment_id, body, user.id)
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.put("/v1/platform/deployments/{deployment_id}/bindings/{capability}")
async def put_binding(
    deployment_id: str,
    capability: str,
    user: SuperadminUser,
    session: SessionDep,
    kernel: KernelDep,
    body: dict[str, Any] = JsonBody,
) -> dict[str, Any]:
    row = await deployments.get_deployment(session, deployment_id)
    await deployments.put_binding(session, kernel, row, capability, body)
    row.updated_by_user_id = user.id
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.post("/v1/platform/deployments/{deployment_id}/clone", status_code=201)
async def clone_deployment(
    deployment_id: str, user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await deployments.clone_deployment(session, deployment_id, body, user.id)
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.delete("/v1/platform/deployments/{deployment_id}")
async def delete_deployment(deployment_id: str, user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    await deployments.delete_deployment(session, deployment_id)
    await session.commit()
    return {"deleted": True, "deployment_id": deployment_id}


@router.post("/v1/platform/deployments/{deployment_id}/activate")
async def activate_deployment(
    deployment_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    row = await activation.activate(session, kernel, deployment_id, user.id)
    await session.commit()
    return {"deployment_profile": await deployments.one_deployment(session, row.id)}


@router.get("/v1/platform/activation-audit")
async def activation_audit(user: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    return {"activation_audit": await activation.activation_audit(session)}
