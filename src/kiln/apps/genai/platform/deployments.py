"""Deployment profiles: bindings per capability with resources and a default, readiness
(`configuration_status`), clone/delete, activation with provider preflight and its audit."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import (
    GenaiActiveDeployment,
    GenaiBindingResource,
    GenaiDeployment,
    GenaiDeploymentBinding,
    GenaiProviderInstance,
)
from kiln.apps.genai.platform.providers import get_provider, summary_dto
from kiln.apps.genai.platform.resources import resolve_resources, resource_dto
from kiln.core.db import utcnow

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


async def get_deployment(session: AsyncSession, deployment_id: str) -> GenaiDeployment:
    row = await session.get(GenaiDeployment, deployment_id) if len(deployment_id) <= 64 else None
    if row is None:
        raise GenaiError(404, "deployment_not_found", "Deployment profile not found")
    return row


async def active_deployment_id(session: AsyncSession) -> str | None:
    row = await session.get(GenaiActiveDeployment, "active")
    return row.deployment_id if row else None


# Built once (every knowledge turn and KB query reads the active bindings): each binding with its
# provider and, outer-joined, its resources in their order. One statement; it was two (the bindings,
# then their resources).
_BINDINGS = (
    select(GenaiDeploymentBinding, GenaiProviderInstance, GenaiBindingResource)
    .join(GenaiProviderInstance, GenaiProviderInstance.id == GenaiDeploymentBinding.provider_instance_id)
    .outerjoin(GenaiBindingResource, GenaiBindingResource.binding_id == GenaiDeploymentBinding.id)
    .where(GenaiDeploymentBinding.deployment_id == bindparam("deployment_id"))
    .order_by(GenaiBindingResource.sort_order, GenaiBindingResource.resource_id)
)


async def bindings_of(
    session: AsyncSession, deployment_id: str
) -> list[tuple[GenaiDeploymentBinding, GenaiProviderInstance, list[GenaiBindingResource]]]:
    found: dict[str, tuple[GenaiDeploymentBinding, GenaiProviderInstance, list[GenaiBindingResource]]] = {}
    for binding, provider, resource in (await session.execute(_BINDINGS, {"deployment_id": deployment_id})).all():
        entry = found.setdefault(binding.id, (binding, provider, []))
        if resource is not None:
            entry[2].append(resource)
    order = list(families.CAPABILITIES)
    out = list(found.values())
    out.sort(key=lambda item: order.index(item[0].capability_key) if item[0].capability_key in order else 99)
    return out


ActiveBindings = dict[str, tuple[GenaiDeploymentBinding, GenaiProviderInstance, list[GenaiBindingResource]]]


async def active_bindings(session: AsyncSession) -> ActiveBindings:
    """The active deployment's bindings by capability key (empty without an active deployment)."""
    deployment = await active_deployment_id(session)
    if deployment is None:
        return {}
    return {b.capability_key: (b, p, res) for b, p, res in await bindings_of(session, deployment)}


def binding_status(
    binding: GenaiDeploymentBinding, provider: GenaiProviderInstance, resources: list[GenaiBindingResource]
) -> dict[str, Any]:
    issues = []
    if not provider.enabled:
        issues.append({"code": "provider_disabled", "message": f"Provider {provider.slug} is disabled"})
    cap = binding.capability_key
    fam = families.family(provider.provider_key)
    built_in = fam is not None and fam.adapter_kind in families.IN_PROCESS_ADAPTERS
    if cap in families.MODEL_BEARING:
        if not resources:
            if not built_in:  # an in-process adapter serves its own embedded model
                issues.append({"code": "resources_missing", "message": "Bind at least one model resource"})
        elif not any(r.is_default for r in resources):
            issues.append({"code": "default_resource_missing", "message": "Choose a default resource"})
    if cap == families.VECTOR_STORE:
        policy = binding.resource_policy or {}
        if policy.get("selection_mode", "explicit") == "explicit" and not resources:
            issues.append(
                {"code": "resources_missing", "message": "Bind a knowledge base or use dynamic_namespace selection"}
            )
    ready = not issues
    return {
        "is_ready": ready,
        "issues": issues,
        "summary": "Ready" if ready else "; ".join(i["message"] for i in issues),
    }


def binding_dto(
    binding: GenaiDeploymentBinding, provider: GenaiProviderInstance, resources: list[GenaiBindingResource]
) -> dict[str, Any]:
    items = [resource_dto(r) for r in resources]
    default = next((resource_dto(r) for r in resources if r.is_default), None)
    return {
        "capability": binding.capability_key,
        "provider": summary_dto(provider),
        "resources": items,
        "default_resource_id": default["id"] if default else None,
        "default_resource": default,
        "resource_policy": binding.resource_policy or {},
        "config": binding.binding_config or {},
        "configuration_status": binding_status(binding, provider, resources),
    }


async def deployment_dto(session: AsyncSession, row: GenaiDeployment, active_id: str | None) -> dict[str, Any]:
    bindings = [binding_dto(*item) for item in await bindings_of(session, row.id)]
    bound = {b["capability"]: b for b in bindings}
    incomplete = [
        cap
        for cap, c in families.CAPABILITIES.items()
        if (c.required and cap not in bound) or (cap in bound and not bound[cap]["configuration_status"]["is_ready"])
    ]
    return {
        "id": row.id,
        "slug": row.slug,
        "display_name": row.display_name,
        "description": row.description,
        "is_active": row.id == active_id,
        "bindings": bindings,
        "configuration_status": {
            "is_ready": not incomplete,
            "incomplete_capabilities": incomplete,
            "summary": "Ready" if not incomplete else f"Incomplete: {', '.join(incomplete)}",
        },
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


async def list_deployments(session: AsyncSession) -> list[dict[str, Any]]:
    active = await active_deployment_id(session)
    rows = (await session.execute(select(GenaiDeployment).order_by(GenaiDeployment.slug))).scalars()
    return [await deployment_dto(session, row, active) for row in rows]


async def one_deployment(session: AsyncSession, deployment_id: str) -> dict[str, Any]:
    row = await get_deployment(session, deployment_id)
    return await deployment_dto(session, row, await active_deployment_id(session))


async def _check_identity(
    session: AsyncSession, body: dict[str, Any], current: GenaiDeployment | None
) -> dict[str, str]:
    slug = str(body.get("slug") if body.get("slug") is not None else (current.slug if current else "")).strip().lower()
    if not SLUG.match(slug):
        raise GenaiError(400, "invalid_slug", "slug: lower-case letters, digits, '.', '_' and '-' (max 100)")
    if current is None or slug != current.slug:
        clash = await session.scalar(select(GenaiDeployment.id).where(GenaiDeployment.slug == slug))
        if clash:
            raise GenaiError(409, "duplicate_deployment_slug", f"A deployment with slug {slug!r} exists")
    name = body.get("display_name", current.display_name if current else None)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise GenaiError(400, "invalid_display_name", "display_name is required (at most 200 characters)")
    description = body.get("description", current.description if current else "") or ""
    if not isinstance(description, str) or len(description) > 4000:
        raise GenaiError(400, "invalid_description", "description must be text of at most 4000 characters")
    return {"slug": slug, "display_name": name.strip(), "description": description}


async def put_binding(
    session: AsyncSession, kernel: Any, deployment: GenaiDeployment, capability: str, body: dict[str, Any]
) -> None:
    """Replace the binding of one capability (capability-local save)."""
    if capability not in families.CAPABILITIES:
        raise GenaiError(400, "invalid_capability", f"Unknown capability {capability[:64]!r}")
    provider_id = str(body.get("provider_id") or "").strip()
    if not provider_id:
        raise GenaiError(400, "provider_required", f"{capability}: provider_id is required")
    provider = await get_provider(session, provider_id)
    fam = families.family(provider.provider_key)
    if fam is None or fam.capability != capability:
        raise GenaiError(
            400, "provider_capability_mismatch", f"Provider {provider.slug} does not implement {capability}"
        )
    policy = body.get("resource_policy") or {}
    config = body.get("config") or {}
    if not isinstance(policy, dict) or not isinstance(config, dict):
        raise GenaiError(400, "invalid_binding", "resource_policy and config must be objects")
    resources = await resolve_resources(
        session, kernel, capability, provider, body.get("resources") or [], body.get("default_resource_id"), policy
    )
    binding = await session.scalar(
        select(GenaiDeploymentBinding).where(
            GenaiDeploymentBinding.deployment_id == deployment.id, GenaiDeploymentBinding.capability_key == capability
        )
    )
    if binding is None:
        binding = GenaiDeploymentBinding(deployment_id=deployment.id, capability_key=capability)
        session.add(binding)
    binding.provider_instance_id = provider.id
    binding.resource_policy = policy
    binding.binding_config = config
    await session.flush()
    await session.execute(delete(GenaiBindingResource).where(GenaiBindingResource.binding_id == binding.id))
    for res in resources:
        res.binding_id = binding.id
        session.add(res)
    deployment.updated_at = utcnow()
    await session.flush()


async def _put_bindings(session: AsyncSession, kernel: Any, row: GenaiDeployment, bindings: Any, replace: bool) -> None:
    if not isinstance(bindings, list) or len(bindings) > len(families.CAPABILITIES):
        raise GenaiError(400, "invalid_bindings", "bindings must be a list with one entry per capability")
    seen = set()
    for item in bindings:
        if not isinstance(item, dict):
            raise GenaiError(400, "invalid_bindings", "each binding must be an object")
        cap = str(item.get("capability") or "")
        if cap in seen:
            raise GenaiError(400, "duplicate_binding", f"capability {cap!r} is bound twice")
        seen.add(cap)
        await put_binding(session, kernel, row, cap, item)
    if replace:
        await session.execute(
            delete(GenaiDeploymentBinding).where(
                GenaiDeploymentBinding.deployment_id == row.id,
                GenaiDeploymentBinding.capability_key.not_in(seen or {""}),
            )
        )


async def create_deployment(
    session: AsyncSession, kernel: Any, body: dict[str, Any], user_id: str | None
) -> GenaiDeployment:
    ident = await _check_identity(session, body, None)
    row = GenaiDeployment(**ident, created_by_user_id=user_id, updated_by_user_id=user_id)
    session.add(row)
    await session.flush()
    await _put_bindings(session, kernel, row, body.get("bindings") or [], replace=False)
    return row


async def update_identity(
    session: AsyncSession, deployment_id: str, body: dict[str, Any], user_id: str
) -> GenaiDeployment:
    row = await get_deployment(session, deployment_id)
    ident = await _check_identity(session, body, row)
    for key, value in ident.items():
        setattr(row, key, value)
    row.updated_by_user_id = user_id
    await session.flush()
    return row


async def replace_deployment(
    session: AsyncSession, kernel: Any, deployment_id: str, body: dict[str, Any], user_id: str
) -> GenaiDeployment:
    row = await update_identity(session, deployment_id, body, user_id)
    if "bindings" in body:
        await _put_bindings(session, kernel, row, body.get("bindings"), replace=True)
    return row


async def clone_deployment(
    session: AsyncSession, deployment_id: str, body: dict[str, Any], user_id: str
) -> GenaiDeployment:
    source = await get_deployment(session, deployment_id)
    body = dict(body or {})
    body.setdefault("slug", f"{source.slug}-copy"[:100])
    body.setdefault("display_name", f"{source.display_name} (copy)"[:200])
    body.setdefault("description", source.description)
    ident = await _check_identity(session, body, None)
    row = GenaiDeployment(**ident, created_by_user_id=user_id, updated_by_user_id=user_id)
    session.add(row)
    await session.flush()
    for binding, _provider, resources in await bindings_of(session, source.id):
        copy = GenaiDeploymentBinding(
            deployment_id=row.id,
            capability_key=binding.capability_key,
            provider_instance_id=binding.provider_instance_id,
            binding_config=dict(binding.binding_config or {}),
            resource_policy=dict(binding.resource_policy or {}),
        )
        session.add(copy)
        await session.flush()
        for res in resources:
            session.add(
                GenaiBindingResource(
                    binding_id=copy.id,
                    resource_id=res.resource_id,
                    resource_kind=res.resource_kind,
                    ref_type=res.ref_type,
                    managed_model_id=res.managed_model_id,
                    knowledge_base_id=res.knowledge_base_id,
                    provider_resource_id=res.provider_resource_id,
                    display_name=res.display_name,
                    resource_metadata=dict(res.resource_metadata or {}),
                    is_default=res.is_default,
                    sort_order=res.sort_order,
                )
            )
    await session.flush()
    return row


async def delete_deployment(session: AsyncSession, deployment_id: str) -> None:
    row = await get_deployment(session, deployment_id)
    if await active_deployment_id(session) == row.id:
        raise GenaiError(
            409, "deployment_profile_active", "The active deployment cannot be deleted; activate another first"
        )
    await session.delete(row)
    await session.flush()
