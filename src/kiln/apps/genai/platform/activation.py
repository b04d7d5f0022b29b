"""Deployment activation: offline check, disabled providers, provider preflight (a provider that
does not answer → 409 naming it), the singleton swap and its audit; the active capabilities view."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import active_deployment_id, bindings_of, get_deployment
from kiln.apps.genai.platform.models import GenaiActivationAudit, GenaiActiveDeployment, GenaiDeployment
from kiln.apps.genai.platform.providers import probe, provider_client
from kiln.apps.genai.runtime.service import is_offline, offline_blocked
from kiln.core.db import utcnow
from kiln.providers.http import ProviderError
from kiln.providers.llm import LLMClient


async def preflight(session: AsyncSession, kernel: Any, deployment_id: str) -> list[dict[str, Any]]:
    """Probe every bound provider; failures as [{capability, provider_slug, code, message}]."""
    settings = genai_settings(kernel)
    failures = []
    for binding, provider, resources in await bindings_of(session, deployment_id):
        result = await probe(session, kernel, provider, "activation preflight", settings.preflight_timeout_seconds)
        cap = binding.capability_key
        if not result["health"]["reachable"]:
            failures.append(
                {
                    "capability": cap,
                    "provider_slug": provider.slug,
                    "code": "provider_unreachable",
                    "message": result.get("error") or f"HTTP {result['health']['status_code']}",
                }
            )
            continue
        if cap in families.MODEL_BEARING and "models" in result:
            advertised = set(result["models"])
            for res in resources:
                runtime_id = res.provider_resource_id or res.resource_id
                if advertised and runtime_id not in advertised:
                    failures.append(
                        {
                            "capability": cap,
                            "provider_slug": provider.slug,
                            "code": "resource_not_exposed",
                            "resource_id": res.resource_id,
                            "message": f"{provider.slug} does not serve {runtime_id}",
                        }
                    )
        default = next((r for r in resources if r.is_default), None)
        if cap == families.EMBEDDINGS and default is not None and not result.get("in_process"):
            error = await _embed_check(session, kernel, provider, default.provider_resource_id or default.resource_id)
            if error:
                failures.append(
                    {
                        "capability": cap,
                        "provider_slug": provider.slug,
                        "code": "embeddings_unreachable",
                        "resource_id": default.resource_id,
                        "message": error,
                    }
                )
    return failures


async def _embed_check(session: AsyncSession, kernel: Any, provider: Any, model: str) -> str | None:
    """Embed the string "healthcheck" with the default resource; the error message, or None."""
    client = await provider_client(
        session, kernel, provider, "activation preflight", timeout=genai_settings(kernel).preflight_timeout_seconds
    )
    try:
        vectors = (await LLMClient(client).embed(["healthcheck"], model=model)).vectors
        return None if vectors and vectors[0] else "empty embedding"
    except ProviderError as exc:
        return exc.message
    finally:
        await client.aclose()


async def activate(
    session: AsyncSession, kernel: Any, deployment_id: str, user_id: str | None, *, check: bool = True
) -> GenaiDeployment:
    row = await get_deployment(session, deployment_id)
    bound = await bindings_of(session, row.id)
    if check:
        cloud = [
            {
                "capability": b.capability_key,
                "provider_id": p.id,
                "provider_slug": p.slug,
                "provider_key": p.provider_key,
            }
            for b, p, _ in bound
            if families.is_cloud(p.provider_key)
        ]
        if cloud and await is_offline(session, genai_settings(kernel)):
            raise offline_blocked(cloud, "activating this deployment")
        disabled = [p.slug for _, p, _ in bound if not p.enabled]
        if disabled:
            raise GenaiError(
                409,
                "deployment_profile_disabled_provider",
                f"Deployment binds disabled provider(s): {', '.join(disabled)}",
                {"providers": disabled},
            )
        failures = await preflight(session, kernel, row.id)
        if failures:
            names = ", ".join(sorted({f["provider_slug"] for f in failures}))
            raise GenaiError(
                409,
                "deployment_profile_validation_failed",
                f"Preflight failed for provider(s): {names}",
                {"failures": failures},
            )
    current = await session.get(GenaiActiveDeployment, "active")
    previous = current.deployment_id if current else None
    now = utcnow()
    if current is None:
        session.add(
            GenaiActiveDeployment(
                singleton_key="active",
                deployment_id=row.id,
                previous_deployment_id=None,
                activated_by_user_id=user_id,
                activated_at=now,
            )
        )
    else:
        current.previous_deployment_id = previous
        current.deployment_id = row.id
        current.activated_by_user_id = user_id
        current.activated_at = now
    session.add(
        GenaiActivationAudit(
            deployment_id=row.id, previous_deployment_id=previous, activated_by_user_id=user_id, activated_at=now
        )
    )
    await session.flush()
    return row


async def activation_audit(session: AsyncSession, limit: int = 200) -> list[dict[str, Any]]:
    rows = list(
        (
            await session.execute(
                select(GenaiActivationAudit).order_by(GenaiActivationAudit.activated_at.desc()).limit(limit)
            )
        ).scalars()
    )
    ids = {r.deployment_id for r in rows} | {r.previous_deployment_id for r in rows if r.previous_deployment_id}
    names = {}
    if ids:
        names = {
            d.id: d
            for d in (await session.execute(select(GenaiDeployment).where(GenaiDeployment.id.in_(ids)))).scalars()
        }

    def ref(deployment_id: str | None) -> dict[str, Any] | None:
        if deployment_id is None:
            return None
        d = names.get(deployment_id)
        return {"id": deployment_id, "slug": d.slug if d else None, "display_name": d.display_name if d else None}

    return [
        {
            "id": r.id,
            "deployment_profile": ref(r.deployment_id),
            "previous_deployment_profile": ref(r.previous_deployment_id),
            "activated_by_user_id": r.activated_by_user_id,
            "activated_at": r.activated_at.isoformat(),
        }
        for r in rows
    ]


async def capabilities(session: AsyncSession) -> list[dict[str, Any]]:
    active = await active_deployment_id(session)
    bound: dict[str, Any] = {}
    slug = None
    if active:
        dep = await session.get(GenaiDeployment, active)
        slug = dep.slug if dep else None
        bound = {b.capability_key: p for b, p, _ in await bindings_of(session, active)}
    out = []
    for cap in families.CAPABILITIES.values():
        provider = bound.get(cap.capability)
        fam = families.family(provider.provider_key) if provider else None
        out.append(
            {
                "capability": cap.capability,
                "display_name": cap.display_name,
                "description": cap.description,
                "required": cap.required,
                "active_provider": None
                if provider is None
                else {
                    "id": provider.id,
                    "slug": provider.slug,
                    "provider_key": provider.provider_key,
                    "provider_origin": fam.provider_origin if fam else "local",
                    "display_name": provider.display_name,
                    "deployment_profile_id": active,
                    "deployment_profile_slug": slug,
                },
            }
        )
    return out
