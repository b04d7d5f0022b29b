"""Model tests (a real call through the model's runtime, stored with the configuration fingerprint),
validation from a successful current test, and the local runtimes a model can be tested on."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import GenaiSettings, genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.access import model_for
from kiln.apps.genai.modelops.credentials import decrypt
from kiln.apps.genai.modelops.lifecycle import fingerprint, missing, usable_credential_any
from kiln.apps.genai.modelops.models import GenaiModel, GenaiModelTestRun, GenaiModelValidation
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import active_deployment_id, bindings_of
from kiln.apps.genai.platform.models import GenaiProviderInstance
from kiln.apps.genai.platform.providers import advertised_ids, get_provider, provider_client
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.apps.genai.runtime.service import is_offline
from kiln.core.auth import User
from kiln.core.db import utcnow
from kiln.providers.http import ProviderClient, ProviderError
from kiln.providers.llm import LLMClient

TASK_CAPABILITY = {"llm": families.LLM, "embeddings": families.EMBEDDINGS}
MAX_TEST_INPUT = 8000


def runtime_id(model: GenaiModel) -> str:
    return model.provider_model_id or model.model_id


async def _cloud_client(session: AsyncSession, kernel: Any, model: GenaiModel) -> ProviderClient:
    if not model.credential_id:
        raise missing("Cloud model is missing a credential")
    credential = await usable_credential_any(session, model.credential_id)
    if not credential.api_base_url:
        raise missing("Cloud credential is missing api_base_url")
    return ProviderClient(
        credential.api_base_url,
        name=f"model:{model.model_id}",
        origin="cloud",
        api_key=decrypt(kernel, credential.id, credential.api_key_encrypted),
        timeout=genai_settings(kernel).provider_timeout_seconds,
        max_retries=1,
        offline_guard=offline_guard(kernel),
    )


async def _default_runtime(session: AsyncSession, capability: str) -> GenaiProviderInstance | None:
    active = await active_deployment_id(session)
    if not active:
        return None
    return next((p for b, p, _ in await bindings_of(session, active) if b.capability_key == capability), None)


async def _local_client(
    session: AsyncSession, kernel: Any, user: User, model: GenaiModel, provider_id: str | None
) -> ProviderClient:
    if user.role != "superadmin":
        raise GenaiError(403, "forbidden", "Local model tests require superadmin")
    capability = TASK_CAPABILITY.get(model.task_key)
    provider = (
        await get_provider(session, provider_id) if provider_id else await _default_runtime(session, capability or "")
    )
    fam = families.family(provider.provider_key) if provider else None
    if (
        provider is None
        or fam is None
        or fam.capability != capability
        or fam.provider_origin != "local"
        or fam.adapter_kind in families.IN_PROCESS_ADAPTERS
    ):
        raise GenaiError(409, "test_runtime_not_supported", "Choose a local server provider of the model's capability")
    client = await provider_client(session, kernel, provider, "model test")
    try:
        advertised = advertised_ids(await client.json("GET", "/models"))
    except ProviderError as exc:
        await client.aclose()
        raise GenaiError(409, "test_runtime_unreachable", f"{provider.slug}: {exc.message}") from None
    if runtime_id(model) not in advertised:
        await client.aclose()
        raise GenaiError(
            409,
            "model_not_served",
            f"{provider.slug} does not serve {runtime_id(model)}",
            {"advertised_model_ids": advertised[:50]},
        )
    return client


async def run_test(
    session: AsyncSession, kernel: Any, user: User, model_id: str, inputs: dict[str, Any], provider_id: str | None
) -> tuple[GenaiModel, GenaiModelTestRun, dict[str, Any]]:
    model = await model_for(session, user, model_id, "test")
    if model.lifecycle_state in ("created", "unregistered", "deleted"):
        raise GenaiError(409, "invalid_state_transition", "Model cannot be tested in its current state")
    kind = model.task_key
    if kind not in TASK_CAPABILITY:
        raise GenaiError(409, "model_test_unsupported", "Testing is not supported for this model type")
    field = "prompt" if kind == "llm" else "text"
    value = inputs.get(field) if isinstance(inputs, dict) else None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEST_INPUT:
        raise GenaiError(400, "invalid_test_input", f"{field} is required (at most {MAX_TEST_INPUT} characters)")
    run = GenaiModelTestRun(
        model_id=model.model_id,
        task_key=kind,
        input_payload={field: value},
        config_fingerprint=fingerprint(model),
        tested_by_user_id=user.id,
    )
    settings: GenaiSettings = genai_settings(kernel)
    if model.runtime_mode_policy == "online_only" and await is_offline(session, settings):
        run.result, run.summary = "failure", "Runtime profile is offline; the model is online-only"
        run.error_details = {"code": "offline_not_allowed"}
        session.add(run)
        await session.commit()
        raise GenaiError(409, "offline_not_allowed", run.summary, {"test_run_id": run.id})
    if model.hosting_kind == "cloud":
        http = await _cloud_client(session, kernel, model)
    else:
        http = await _local_client(session, kernel, user, model, provider_id)
    result: dict[str, Any] = {"kind": kind, "success": False}
    started = time.perf_counter()
    try:
        llm = LLMClient(http, runtime_id(model))
        if kind == "llm":
            chat = await llm.chat([{"role": "user", "content": value}], max_tokens=256)
            result.update(success=True, response_text=chat.content)
            run.output_payload = {"response_text": chat.content[:4000], "usage": chat.usage}
        else:
            emb = await llm.embed([value])
            vector = emb.vectors[0]
            result.update(success=True, dimension=len(vector), vector_preview=vector[:8])
            run.output_payload = {"dimension": len(vector)}
        run.result, run.summary = "success", "Model answered"
    except ProviderError as exc:
        run.result, run.summary = "failure", exc.message[:500]
        run.error_details = {"status": exc.status, "message": exc.message[:500]}
    finally:
        await http.aclose()
    run.latency_ms = round((time.perf_counter() - started) * 1000, 2)
    result["latency_ms"] = run.latency_ms
    session.add(run)
    await session.flush()
    return model, run, result


async def validate(session: AsyncSession, user: User, model_id: str, test_run_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "validate")
    if model.lifecycle_state in ("created", "unregistered", "deleted"):
        raise GenaiError(409, "invalid_state_transition", "Model cannot be validated in its current state")
    if not test_run_id:
        raise GenaiError(400, "validation_test_required", "Validation requires a successful model test run")
    run = await session.get(GenaiModelTestRun, test_run_id) if len(test_run_id) <= 64 else None
    if run is None:
        raise GenaiError(404, "test_run_not_found", "Model test run not found")
    if run.model_id != model.model_id:
        raise GenaiError(409, "test_run_mismatch", "Model test run does not belong to this model")
    if run.result != "success":
        raise GenaiError(409, "validation_test_failed", "Only successful model tests can be validated")
    current = fingerprint(model)
    if run.config_fingerprint != current:
        raise GenaiError(409, "validation_test_stale", "Model configuration changed after the successful test run")
    if (
        model.is_validation_current
        and model.last_validation_config_fingerprint == current
        and model.last_validation_status == "success"
    ):
        raise GenaiError(409, "validation_already_current", "The model's validation is already current")
    now = utcnow()
    session.add(
        GenaiModelValidation(
            model_id=model.model_id,
            result="success",
            summary=run.summary,
            error_details={"test_run_id": run.id},
            config_fingerprint=current,
            validated_by_user_id=user.id,
            created_at=now,
        )
    )
    model.is_validation_current = True
    model.last_validation_status = "success"
    model.last_validated_at = now
    model.last_validation_error = None
    model.last_validation_config_fingerprint = current
    if model.lifecycle_state != "active":
        model.lifecycle_state = "validated"
    await session.flush()
    return model


async def history(session: AsyncSession, cls: type, model_id: str, limit: int) -> list[Any]:
    rows = await session.execute(
        select(cls).where(cls.model_id == model_id).order_by(cls.created_at.desc()).limit(max(1, min(limit, 200)))
    )
    return list(rows.scalars())


async def test_runtimes(session: AsyncSession, kernel: Any, user: User, model_id: str) -> dict[str, Any]:
    from kiln.apps.genai.platform.providers import list_providers, probe

    model = await model_for(session, user, model_id, "test")
    capability = TASK_CAPABILITY.get(model.task_key)
    active = await _default_runtime(session, capability or "")
    runtimes = []
    for provider in await list_providers(session):
        fam = families.family(provider.provider_key)
        if (
            fam is None
            or fam.capability != capability
            or fam.provider_origin != "local"
            or fam.adapter_kind in families.IN_PROCESS_ADAPTERS
        ):
            continue
        result = await probe(session, kernel, provider, "model test", genai_settings(kernel).preflight_timeout_seconds)
        advertised = result.get("models", [])
        slot = provider.slot or {}
        runtimes.append(
            {
                "provider_instance_id": provider.id,
                "slug": provider.slug,
                "display_name": provider.display_name,
                "provider_key": provider.provider_key,
                "endpoint_url": provider.endpoint_url,
                "adapter_kind": fam.adapter_kind,
                "enabled": provider.enabled,
                "is_active": active is not None and active.id == provider.id,
                "reachable": result["health"]["reachable"],
                "status_code": result["health"]["status_code"],
                "matches_model": runtime_id(model) in advertised,
                "matched_model_id": runtime_id(model) if runtime_id(model) in advertised else None,
                "advertised_model_ids": advertised[:100],
                "load_state": slot.get("load_state") or "empty",
                "loaded_managed_model_id": slot.get("loaded_managed_model_id"),
            }
        )
    return {
        "model_id": model.model_id,
        "runtimes": runtimes,
        "default_provider_instance_id": active.id if active else None,
    }
