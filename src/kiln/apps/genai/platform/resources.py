"""Binding resources: what a deployment binding may serve.

Model-bearing capabilities bind ModelOps models that are active with a current successful
validation, of the capability's task and of the provider's hosting (§3.5). Vector-store bindings
bind knowledge bases through a resolver the knowledge-base domain registers
(`register_resource_resolver("knowledge_base", fn)`), or select them by namespace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.models import GenaiModel
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import GenaiBindingResource, GenaiProviderInstance

MAX_RESOURCES = 100
TASK_OF = {families.LLM: "llm", families.EMBEDDINGS: "embeddings"}
# ref_type -> async fn(session, provider, item) -> dict of GenaiBindingResource fields
Resolver = Callable[[AsyncSession, GenaiProviderInstance, dict[str, Any]], Awaitable[dict[str, Any]]]
_resolvers: dict[str, Resolver] = {}


def register_resource_resolver(ref_type: str, resolver: Resolver) -> None:
    _resolvers[ref_type] = resolver


def resource_dto(r: GenaiBindingResource) -> dict[str, Any]:
    return {
        "id": r.resource_id,
        "resource_kind": r.resource_kind,
        "ref_type": r.ref_type,
        "managed_model_id": r.managed_model_id,
        "knowledge_base_id": r.knowledge_base_id,
        "provider_resource_id": r.provider_resource_id,
        "display_name": r.display_name,
        "metadata": r.resource_metadata or {},
    }


async def _managed_model(
    session: AsyncSession, capability: str, provider: GenaiProviderInstance, model_id: str
) -> dict[str, Any]:
    model = await session.get(GenaiModel, model_id) if len(model_id) <= 200 else None
    if model is None:
        raise GenaiError(
            400,
            "resource_not_found",
            f"Model {model_id[:200]!r} is not a ModelOps model",
            {"resource_id": model_id[:200]},
        )
    if model.task_key != TASK_OF[capability]:
        raise GenaiError(
            400,
            "resource_task_mismatch",
            f"Model {model_id} has task {model.task_key}; {capability} needs {TASK_OF[capability]}",
        )
    if not (
        model.lifecycle_state == "active" and model.is_validation_current and model.last_validation_status == "success"
    ):
        raise GenaiError(
            400,
            "resource_not_eligible",
            f"Model {model_id} must be active with a current successful validation",
            {"resource_id": model_id},
        )
    fam = families.family(provider.provider_key)
    cloud = fam is not None and fam.provider_origin == "cloud"
    if cloud and (model.hosting_kind != "cloud" or not model.provider_model_id):
        raise GenaiError(
            400,
            "resource_hosting_mismatch",
            f"A cloud provider serves only cloud models with a provider_model_id ({model_id} is not)",
        )
    if not cloud and model.hosting_kind != "local":
        raise GenaiError(400, "resource_hosting_mismatch", f"A local provider serves only local models ({model_id})")
    return {
        "resource_kind": "model",
        "ref_type": "managed_model",
        "managed_model_id": model.model_id,
        "provider_resource_id": model.provider_model_id or model.model_id,
        "display_name": model.name,
        "resource_metadata": {"task_key": model.task_key, "hosting": model.hosting_kind},
    }


async def resolve_resources(
    session: AsyncSession,
    kernel: Any,
    capability: str,
    provider: GenaiProviderInstance,
    items: Any,
    default_id: Any,
    policy: dict[str, Any],
) -> list[GenaiBindingResource]:
    if not isinstance(items, list) or len(items) > MAX_RESOURCES:
        raise GenaiError(400, "invalid_resources", f"resources must be a list of at most {MAX_RESOURCES}")
    if capability == families.VECTOR_STORE:
        mode = policy.get("selection_mode", "explicit")
        if mode not in ("explicit", "dynamic_namespace"):
            raise GenaiError(400, "invalid_resource_policy", "selection_mode must be explicit or dynamic_namespace")
        if mode == "dynamic_namespace":
            if not str(policy.get("namespace_prefix") or "").strip():
                raise GenaiError(400, "invalid_resource_policy", "dynamic_namespace needs a namespace_prefix")
            if items:
                raise GenaiError(400, "invalid_resource_policy", "dynamic_namespace forbids explicit resources")
    out: list[GenaiBindingResource] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise GenaiError(400, "invalid_resources", "each resource must be an object")
        if capability in families.MODEL_BEARING:
            model_id = str(item.get("managed_model_id") or item.get("id") or "")
            fields = await _managed_model(session, capability, provider, model_id)
            resource_id = model_id
        else:
            ref_type = str(item.get("ref_type") or ("knowledge_base" if item.get("knowledge_base_id") else ""))
            resolver = _resolvers.get(ref_type)
            if resolver is None:
                raise GenaiError(
                    400,
                    "invalid_resource_ref_type",
                    f"{capability} resources of ref_type {ref_type[:32]!r} are not supported",
                )
            fields = await resolver(session, provider, item)
            resource_id = str(fields.pop("resource_id", None) or item.get("id") or "")
        if not resource_id or any(r.resource_id == resource_id for r in out):
            raise GenaiError(400, "invalid_resources", "resource ids must be present and unique")
        out.append(GenaiBindingResource(resource_id=resource_id, sort_order=position, is_default=False, **fields))
    if default_id not in (None, ""):
        match = next((r for r in out if r.resource_id == default_id), None)
        if match is None:
            raise GenaiError(400, "invalid_default_resource", "default_resource_id must be one of the resources")
        match.is_default = True
    return out
