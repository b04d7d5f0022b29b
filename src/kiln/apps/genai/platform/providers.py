"""Provider instances: CRUD, the HTTP client of one instance (origin from its family, the offline
guard, resolved secrets) and validation (health + inventory)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import GenaiDeploymentBinding, GenaiProviderInstance
from kiln.apps.genai.platform.secrets import check_secret_refs, resolve_secret_refs
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.apps.genai.runtime.service import ensure_provider_allowed
from kiln.providers.http import OfflineBlocked, ProviderClient, ProviderError

SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
SLOT_KEYS = (
    "loaded_managed_model_id",
    "loaded_managed_model_name",
    "loaded_runtime_model_id",
    "loaded_local_path",
    "loaded_source_id",
    "load_state",
    "load_error",
)
MAX_CONFIG_BYTES = 16 * 1024


def provider_dto(p: GenaiProviderInstance) -> dict[str, Any]:
    fam = families.family(p.provider_key)
    slot = p.slot or {}
    dto = {
        "id": p.id,
        "slug": p.slug,
        "provider_key": p.provider_key,
        "provider_origin": fam.provider_origin if fam else "local",
        "capability": fam.capability if fam else None,
        "adapter_kind": fam.adapter_kind if fam else None,
        "display_name": p.display_name,
        "description": p.description,
        "endpoint_url": p.endpoint_url,
        "healthcheck_url": p.healthcheck_url,
        "enabled": p.enabled,
        "config": p.config or {},
        "secret_refs": p.secret_refs or {},
    }
    if fam and fam.capability in families.MODEL_BEARING and fam.provider_origin == "local":
        dto.update({key: slot.get(key) for key in SLOT_KEYS})
        dto["load_state"] = slot.get("load_state") or "empty"
    return dto


def summary_dto(p: GenaiProviderInstance) -> dict[str, Any]:
    fam = families.family(p.provider_key)
    return {
        "id": p.id,
        "slug": p.slug,
        "provider_key": p.provider_key,
        "provider_origin": fam.provider_origin if fam else "local",
        "display_name": p.display_name,
        "endpoint_url": p.endpoint_url,
        "enabled": p.enabled,
        "adapter_kind": fam.adapter_kind if fam else None,
    }


def _check_url(value: Any, field: str, required: bool, dsn: bool = False) -> str | None:
    if value in (None, ""):
        if required:
            raise GenaiError(400, f"invalid_{field}", f"{field} is required")
        return None
    if dsn:
        return _check_dsn(value, field)
    if not isinstance(value, str) or len(value) > 2048 or not value.startswith(("http://", "https://")):
        raise GenaiError(400, f"invalid_{field}", f"{field} must be an http(s) URL")
    return value.rstrip("/")


def _check_dsn(value: Any, field: str) -> str:
    """A postgresql:// DSN without a password (it would be returned by every provider read)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or len(value) > 2048 or not value.startswith(("postgresql://", "postgres://")):
        raise GenaiError(400, f"invalid_{field}", f"{field} must be a postgresql:// DSN")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError:
        raise GenaiError(400, f"invalid_{field}", f"{field} is not a valid DSN") from None
    if parts.password is not None or "password=" in parts.query:
        raise GenaiError(400, f"invalid_{field}", f"{field} must not hold a password: use secret_refs.password")
    return value


def _check_config(value: Any) -> dict[str, Any]:
    import json

    if value is None:
        return {}
    if not isinstance(value, dict) or len(json.dumps(value, default=str)) > MAX_CONFIG_BYTES:
        raise GenaiError(400, "invalid_config", "config must be an object of at most 16 kB")
    return value


async def list_providers(session: AsyncSession) -> list[GenaiProviderInstance]:
    rows = await session.execute(select(GenaiProviderInstance).order_by(GenaiProviderInstance.slug))
    return list(rows.scalars())


async def get_provider(session: AsyncSession, provider_id: str) -> GenaiProviderInstance:
    row = await session.get(GenaiProviderInstance, provider_id) if len(provider_id) <= 64 else None
    if row is None:
        raise GenaiError(404, "provider_not_found", "Provider instance not found")
    return row


def _apply(row: GenaiProviderInstance, body: dict[str, Any], fam: families.Family) -> None:
    in_process = fam.adapter_kind in families.IN_PROCESS_ADAPTERS
    row.display_name = str(body.get("display_name") or row.display_name or row.slug)[:200]
    row.description = str(body.get("description") or "")[:4000]
    dsn = fam.adapter_kind in families.DSN_ADAPTERS
    row.endpoint_url = _check_url(body.get("endpoint_url"), "endpoint_url", not in_process, dsn) or ""
    row.healthcheck_url = _check_url(body.get("healthcheck_url"), "healthcheck_url", False)
    row.enabled = bool(body.get("enabled", True))
    row.config = _check_config(body.get("config"))
    row.secret_refs = check_secret_refs(body.get("secret_refs"))


async def create_provider(session: AsyncSession, body: dict[str, Any]) -> GenaiProviderInstance:
    key = str(body.get("provider_key") or "").strip()
    fam = families.family(key)
    if fam is None:
        raise GenaiError(400, "invalid_provider_key", f"Unknown provider family {key[:64]!r}")
    slug = str(body.get("slug") or "").strip().lower()
    if not SLUG.match(slug):
        raise GenaiError(400, "invalid_slug", "slug: lower-case letters, digits, '.', '_' and '-' (max 100)")
    if await session.scalar(select(func.count()).where(GenaiProviderInstance.slug == slug)):
        raise GenaiError(409, "duplicate_provider_slug", f"A provider with slug {slug!r} exists")
    row = GenaiProviderInstance(slug=slug, provider_key=key, slot={})
    _apply(row, body, fam)
    session.add(row)
    await session.flush()
    return row


async def update_provider(session: AsyncSession, provider_id: str, body: dict[str, Any]) -> GenaiProviderInstance:
    row = await get_provider(session, provider_id)
    if "provider_key" in body and body["provider_key"] not in (None, row.provider_key):
        raise GenaiError(
            400,
            "provider_key_immutable",
            "provider_key (and so its origin) cannot change; create a provider of the other family",
        )
    slug = str(body.get("slug") or row.slug).strip().lower()
    if slug != row.slug:
        if not SLUG.match(slug):
            raise GenaiError(400, "invalid_slug", "slug: lower-case letters, digits, '.', '_' and '-' (max 100)")
        if await session.scalar(select(func.count()).where(GenaiProviderInstance.slug == slug)):
            raise GenaiError(409, "duplicate_provider_slug", f"A provider with slug {slug!r} exists")
        row.slug = slug
    fam = families.family(row.provider_key)
    assert fam is not None
    _apply(row, body, fam)
    await session.flush()
    return row


async def delete_provider(session: AsyncSession, provider_id: str) -> None:
    row = await get_provider(session, provider_id)
    used = await session.scalar(
        select(func.count())
        .select_from(GenaiDeploymentBinding)
        .where(GenaiDeploymentBinding.provider_instance_id == row.id)
    )
    if used:
        raise GenaiError(
            409, "provider_in_use", "Provider is bound in a deployment; unbind it first", {"binding_count": int(used)}
        )
    await session.delete(row)
    await session.flush()


# ------------------------------------------------------------------------------ runtime clients


async def provider_client(
    session: AsyncSession, kernel: Any, provider: GenaiProviderInstance, action: str, *, timeout: float | None = None
) -> ProviderClient:
    """A client for `provider` (caller closes it); 409 offline_provider_blocked for cloud offline."""
    settings = genai_settings(kernel)
    await ensure_provider_allowed(session, settings, provider, action)
    fam = families.family(provider.provider_key)
    secrets = await resolve_secret_refs(session, kernel, provider.secret_refs or {})
    return ProviderClient(
        provider.endpoint_url,
        name=provider.slug,
        origin=fam.provider_origin if fam else "cloud",  # type: ignore[arg-type]
        api_key=secrets.get("api_key"),
        timeout=timeout or settings.provider_timeout_seconds,
        connect_timeout=min(5.0, timeout or 5.0),
        max_retries=0 if timeout else 2,
        offline_guard=offline_guard(kernel),
    )


def _models_path(provider: GenaiProviderInstance) -> str:
    return str((provider.config or {}).get("models_path") or "/models")


def advertised_ids(payload: Any) -> list[str]:
    data = payload.get("data") if isinstance(payload, dict) else payload
    if not isinstance(data, list):
        return []
    return [str(item["id"]) for item in data[:1000] if isinstance(item, dict) and item.get("id")]


async def probe(
    session: AsyncSession, kernel: Any, provider: GenaiProviderInstance, action: str, timeout: float
) -> dict[str, Any]:
    """Health and inventory of one provider: {health{reachable,status_code}, models?, error?}."""
    fam = families.family(provider.provider_key)
    if fam is None:
        return {"health": {"reachable": False, "status_code": 0}, "error": "unknown provider family"}
    if fam.adapter_kind in families.IN_PROCESS_ADAPTERS:
        return {"health": {"reachable": True, "status_code": 200}, "in_process": True}
    if fam.adapter_kind in families.DSN_ADAPTERS:
        return await _probe_database(session, kernel, provider, timeout)
    client = await provider_client(session, kernel, provider, action, timeout=timeout)
    result: dict[str, Any] = {"health": {"reachable": False, "status_code": 0}}
    try:
        if fam.capability in families.MODEL_BEARING:
            response = await client.request("GET", _models_path(provider), expect_ok=False)
            result["health"] = {"reachable": response.is_success, "status_code": response.status_code}
            if response.is_success:
                try:
                    result["models"] = advertised_ids(response.json())
                except ValueError:
                    result["health"]["reachable"] = False
                    result["error"] = "the models listing is not JSON"
        else:
            path = provider.healthcheck_url or provider.endpoint_url + _health_path(fam.adapter_kind)
            response = await client.request("GET", path, expect_ok=False)
            result["health"] = {"reachable": response.is_success, "status_code": response.status_code}
    except OfflineBlocked:
        raise
    except ProviderError as exc:
        result["error"] = exc.message
    finally:
        await client.aclose()
    return result


async def _probe_database(
    session: AsyncSession, kernel: Any, provider: GenaiProviderInstance, timeout: float
) -> dict[str, Any]:
    """A pgvector provider: connect, make sure the extension is there, `SELECT 1`."""
    from kiln.providers.vectors import VectorStoreError
    from kiln.providers.vectors.pgvector import PgVectorStore

    secrets = await resolve_secret_refs(session, kernel, provider.secret_refs or {})
    store = PgVectorStore(provider.endpoint_url, password=secrets.get("password"), connect_timeout=timeout)
    try:
        await store.health()
        return {"health": {"reachable": True, "status_code": 200}}
    except VectorStoreError as exc:
        return {"health": {"reachable": False, "status_code": 0}, "error": exc.message}
    finally:
        await store.close()


def _health_path(adapter_kind: str) -> str:
    return {"qdrant_http": "/healthz", "weaviate_http": "/v1/.well-known/ready"}.get(adapter_kind, "/health")
