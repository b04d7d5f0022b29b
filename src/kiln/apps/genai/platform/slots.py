"""The loaded-model slot of a local model-bearing provider: which managed model the runtime should
serve. With `config.runtime_admin_base_url` set, the runtime controller is told to load/unload
(`POST /v1/admin/load-model|unload-model`); otherwise the slot is confirmed against the provider's
`/models` inventory (`loaded` when it serves the model, `error` with the reason when not)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.models import GenaiModel
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import GenaiProviderInstance
from kiln.apps.genai.platform.providers import get_provider, probe
from kiln.providers.http import ProviderClient, ProviderError

TASK = {families.LLM: "llm", families.EMBEDDINGS: "embeddings"}


def _slot_provider(provider: GenaiProviderInstance) -> families.Family:
    fam = families.family(provider.provider_key)
    if (
        fam is None
        or fam.capability not in families.MODEL_BEARING
        or fam.provider_origin != "local"
        or fam.adapter_kind in families.IN_PROCESS_ADAPTERS
    ):
        raise GenaiError(409, "loaded_model_unsupported", "Only local model servers have a loaded-model slot")
    return fam


async def _controller(kernel: Any, provider: GenaiProviderInstance, path: str, body: dict[str, Any]) -> str | None:
    base = (provider.config or {}).get("runtime_admin_base_url")
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        return None
    client = ProviderClient(
        base,
        name=f"{provider.slug}-admin",
        origin="local",
        max_retries=0,
        timeout=genai_settings(kernel).provider_timeout_seconds,
    )
    try:
        await client.request("POST", path, json=body)
        return ""
    except ProviderError as exc:
        return exc.message
    finally:
        await client.aclose()


async def load(session: AsyncSession, kernel: Any, provider_id: str, model_id: str) -> GenaiProviderInstance:
    provider = await get_provider(session, provider_id)
    fam = _slot_provider(provider)
    model = await session.get(GenaiModel, model_id) if 0 < len(model_id) <= 200 else None
    if model is None:
        raise GenaiError(404, "not_found", "Model not found")
    if model.hosting_kind != "local" or model.task_key != TASK[fam.capability]:
        raise GenaiError(
            400,
            "loaded_model_mismatch",
            f"{provider.slug} serves local {TASK[fam.capability]} models; {model_id} is not one",
        )
    runtime_id = model.provider_model_id or model.model_id
    slot = {
        "loaded_managed_model_id": model.model_id,
        "loaded_managed_model_name": model.name,
        "loaded_runtime_model_id": runtime_id,
        "loaded_local_path": model.local_path,
        "loaded_source_id": model.source_id,
        "load_state": "loading",
        "load_error": None,
    }
    error = await _controller(
        kernel,
        provider,
        "/v1/admin/load-model",
        {
            "runtime_model_id": runtime_id,
            "local_path": model.local_path,
            "managed_model_id": model.model_id,
            "display_name": model.name,
        },
    )
    if error is None:
        result = await probe(
            session, kernel, provider, "loaded-model check", genai_settings(kernel).preflight_timeout_seconds
        )
        served = runtime_id in result.get("models", [])
        slot["load_state"] = "loaded" if served else "error"
        slot["load_error"] = None if served else (result.get("error") or f"{provider.slug} does not serve {runtime_id}")
    elif error:
        slot["load_state"], slot["load_error"] = "error", error[:500]
    provider.slot = slot
    await session.flush()
    return provider


async def unload(session: AsyncSession, kernel: Any, provider_id: str) -> GenaiProviderInstance:
    provider = await get_provider(session, provider_id)
    _slot_provider(provider)
    current = (provider.slot or {}).get("loaded_runtime_model_id")
    error = await _controller(kernel, provider, "/v1/admin/unload-model", {"runtime_model_id": current})
    provider.slot = {"load_state": "error", "load_error": error[:500]} if error else {"load_state": "empty"}
    await session.flush()
    return provider
