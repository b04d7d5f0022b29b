"""`/v1/models/inference|generate`: a call goes only through the active `llm_inference` binding.

The requested model must be invokable by the caller (visible, active, validation current, its
credential usable, not online-only while offline) and be a resource of the active binding
(409 `model_not_bound`); the provider's runtime id for it is the resource's `provider_resource_id`.
One pooled HTTP client per provider configuration is reused across requests.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.access import model_for
from kiln.apps.genai.modelops.lifecycle import usable_credential_any
from kiln.apps.genai.modelops.models import GenaiModel
from kiln.apps.genai.modelops.usage import buffer_of
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import (
    GenaiActiveDeployment,
    GenaiBindingResource,
    GenaiDeploymentBinding,
    GenaiProviderInstance,
)
from kiln.apps.genai.platform.secrets import resolve_secret_refs
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.apps.genai.runtime.service import ensure_provider_allowed, is_offline
from kiln.core.auth import User
from kiln.providers.http import ProviderClient, ProviderError, shared_client
from kiln.providers.llm import LLMClient

MAX_HISTORY = 100
MAX_MESSAGE_CHARS = 100_000
ROLES = {"system", "user", "assistant", "tool"}


def coerce_history(value: Any) -> list[dict[str, str]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or len(value) > MAX_HISTORY:
        raise GenaiError(400, "invalid_history", f"history must be a list of at most {MAX_HISTORY} messages")
    out = []
    for item in value:
        if not isinstance(item, dict) or item.get("role") not in ROLES:
            raise GenaiError(400, "invalid_history", "each history item needs role (system|user|assistant|tool)")
        content = item.get("content", "")
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        if not isinstance(content, str) or len(content) > MAX_MESSAGE_CHARS:
            raise GenaiError(400, "invalid_history", "history content must be text")
        out.append({"role": item["role"], "content": content})
    return out


def join_target(stmt: Any) -> Any:
    """`stmt` (whose FROM has `GenaiModel`) outer-joined to the active llm_inference binding's
    provider and its resource for that model: the columns `resolve_target` reads."""
    binding_on = (GenaiDeploymentBinding.deployment_id == GenaiActiveDeployment.deployment_id) & (
        GenaiDeploymentBinding.capability_key == families.LLM
    )
    return (
        stmt.outerjoin(GenaiActiveDeployment, GenaiActiveDeployment.singleton_key == "active")
        .outerjoin(GenaiDeploymentBinding, binding_on)
        .outerjoin(GenaiProviderInstance, GenaiProviderInstance.id == GenaiDeploymentBinding.provider_instance_id)
        .outerjoin(
            GenaiBindingResource,
            (GenaiBindingResource.binding_id == GenaiDeploymentBinding.id)
            & (GenaiBindingResource.resource_id == GenaiModel.model_id),
        )
    )


TARGET_COLUMNS = (GenaiModel, GenaiProviderInstance, GenaiBindingResource)
Target = tuple[GenaiModel | None, GenaiProviderInstance | None, GenaiBindingResource | None]

# Built once with a bound parameter: every inference call and playground turn runs it before the
# model call, and building the five-way join (and its cache key) per call cost more CPU than
# running it (a third of `prepare`'s CPU on SQLite).
_TARGET = join_target(select(*TARGET_COLUMNS).select_from(GenaiModel)).where(
    GenaiModel.model_id == bindparam("model_id")
)


async def resolve_target(
    session: AsyncSession, user: User, model_id: str, found: Target | None = None
) -> tuple[GenaiModel, GenaiProviderInstance | None, GenaiBindingResource | None]:
    """The model, and the active llm_inference binding's provider and resource for it (None when
    not bound), in one query
    (or `found`, the same columns read by a caller's own query through `join_target`).

    Visibility follows `access.model_for` (a model the caller may not see is 404)."""
    if found is None:
        row = (await session.execute(_TARGET, {"model_id": model_id})).first()
        found = (row[0], row[1], row[2]) if row is not None else (None, None, None)
    model, provider, resource = found
    if model is None:
        raise GenaiError(404, "not_found", "Model not found")
    if not (user.role == "superadmin" or model.owner_user_id == user.id or model.visibility_scope == "platform"):
        await model_for(session, user, model_id, "read")  # shared to the caller's role, else 404
    return model, provider, resource


async def _client(session: AsyncSession, kernel: Any, provider: GenaiProviderInstance) -> LLMClient:
    settings = genai_settings(kernel)
    await ensure_provider_allowed(session, settings, provider, "inference")
    if not provider.enabled:
        raise GenaiError(409, "provider_disabled", f"Provider {provider.slug} is disabled")
    secrets = await resolve_secret_refs(session, kernel, provider.secret_refs or {})
    api_key = secrets.get("api_key")
    fam = families.family(provider.provider_key)
    origin = fam.provider_origin if fam else "cloud"
    key_hash = hashlib.sha256((api_key or "").encode()).hexdigest()
    guard = offline_guard(kernel)
    cache_key = (
        "genai",
        provider.id,
        provider.endpoint_url,
        origin,
        key_hash,
        settings.provider_timeout_seconds,
        id(kernel),
    )

    def make() -> ProviderClient:
        return ProviderClient(
            provider.endpoint_url,
            name=provider.slug,
            origin=origin,  # type: ignore[arg-type]
            api_key=api_key,
            timeout=settings.provider_timeout_seconds,
            offline_guard=guard,
        )

    return LLMClient(shared_client(cache_key, make))


async def prepare(
    session: AsyncSession, kernel: Any, user: User, model_id: str, *, found: Target | None = None
) -> tuple[GenaiModel, GenaiProviderInstance, LLMClient, str]:
    """The checks every inference path runs, then the client and the runtime model id to call.

    `found`: the model's target columns already read by the caller's query (`join_target`), which
    saves a statement before the model call."""
    if not model_id:
        raise GenaiError(400, "invalid_model", "model is required")
    model, provider, resource = await resolve_target(session, user, model_id, found)
    if not (
        model.lifecycle_state == "active" and model.is_validation_current and model.last_validation_status == "success"
    ):
        raise GenaiError(
            409,
            "model_not_invokable",
            "Model is not active with a current successful validation",
            {"model_id": model_id},
        )
    if model.runtime_mode_policy == "online_only" and await is_offline(session, genai_settings(kernel)):
        raise GenaiError(409, "offline_not_allowed", "Runtime profile is offline; the model is online-only")
    if model.credential_id:
        await usable_credential_any(session, model.credential_id)
    if provider is None:
        raise GenaiError(
            409,
            "capability_not_configured",
            "The active deployment has no llm_inference binding; bind a provider first",
        )
    if resource is None:
        raise GenaiError(
            409,
            "model_not_bound",
            "Requested model is not bound by the active LLM deployment binding",
            {"model_id": model_id, "provider": provider.slug},
        )
    llm = await _client(session, kernel, provider)
    return model, provider, llm, resource.provider_resource_id or model.provider_model_id or model.model_id


async def invoke(
    session: AsyncSession,
    kernel: Any,
    user: User,
    model_id: str,
    messages: list[dict[str, Any]],
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    model, provider, llm, runtime = await prepare(session, kernel, user, model_id)
    started = time.perf_counter()
    try:
        result = await llm.chat(messages, model=runtime, max_tokens=max_tokens, temperature=temperature)
    except ProviderError as exc:
        raise GenaiError(502, "llm_unreachable", f"LLM provider {provider.slug} failed: {exc.message}") from None
    latency = (time.perf_counter() - started) * 1000
    buffer_of(kernel).add(model.model_id, user.id, latency, result.usage)
    return {
        "output": result.content,
        "model": model.model_id,
        "response": {
            "model": result.model,
            "finish_reason": result.finish_reason,
            "usage": result.usage,
            "output": [{"role": "assistant", "content": [{"type": "text", "text": result.content}]}],
        },
    }
