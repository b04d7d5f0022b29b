"""Bootstrap of the control plane: the embedded providers and the `local-default` deployment that
works offline with nothing else running (Kiln's local embeddings + embedded vector store), plus
server-backed providers only when their URL is configured. Existing rows are never overwritten, so
operator edits survive restarts; a provider configured later is bound into `local-default` only
where that capability is still unbound."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import (
    GenaiActiveDeployment,
    GenaiDeployment,
    GenaiDeploymentBinding,
    GenaiProviderInstance,
)

LOCAL_EMBEDDINGS_SLUG = "kiln-local-embeddings"
EMBEDDED_VECTOR_SLUG = "kiln-embedded-vector"
LOCAL_DEFAULT = "local-default"
LOCAL_QDRANT = "local-qdrant"
KB_NAMESPACE = "kb_"


def seeded_providers(kernel: Any) -> list[dict[str, Any]]:
    cfg = genai_settings(kernel)
    rows: list[dict[str, Any]] = [
        {
            "slug": LOCAL_EMBEDDINGS_SLUG,
            "provider_key": "local_embeddings",
            "display_name": "Kiln local embeddings",
            "endpoint_url": "",
        },
        {
            "slug": EMBEDDED_VECTOR_SLUG,
            "provider_key": "embedded_vector",
            "display_name": "Kiln embedded vector store",
            "endpoint_url": "",
        },
    ]
    for slug, key, name, url in (
        ("llm-local", "vllm_local", "Local LLM server", cfg.llm_url),
        ("embeddings-local", "vllm_embeddings_local", "Local embeddings server", cfg.embeddings_url),
        ("qdrant-local", "qdrant_local", "Qdrant", cfg.qdrant_url),
        ("weaviate-local", "weaviate_local", "Weaviate", cfg.weaviate_url),
        ("pgvector-local", "pgvector_local", "pgvector", cfg.pgvector_url),
        ("mcp-gateway-local", "mcp_gateway_local", "MCP gateway", cfg.mcp_url),
        ("sandbox-local", "sandbox_local", "Code sandbox", cfg.sandbox_url),
    ):
        if url:
            rows.append({"slug": slug, "provider_key": key, "display_name": name, "endpoint_url": url.rstrip("/")})
    return rows


async def _ensure_deployment(
    session: AsyncSession, slug: str, name: str, description: str, bindings: dict[str, GenaiProviderInstance]
) -> GenaiDeployment:
    row = await session.scalar(select(GenaiDeployment).where(GenaiDeployment.slug == slug))
    if row is None:
        row = GenaiDeployment(slug=slug, display_name=name, description=description)
        session.add(row)
        await session.flush()
    existing = set(
        (
            await session.execute(
                select(GenaiDeploymentBinding.capability_key).where(GenaiDeploymentBinding.deployment_id == row.id)
            )
        ).scalars()
    )
    for capability, provider in bindings.items():
        if capability in existing:
            continue
        policy = (
            {"selection_mode": "dynamic_namespace", "namespace_prefix": KB_NAMESPACE}
            if capability == families.VECTOR_STORE
            else {}
        )
        session.add(
            GenaiDeploymentBinding(
                deployment_id=row.id,
                capability_key=capability,
                provider_instance_id=provider.id,
                resource_policy=policy,
                binding_config={},
            )
        )
    await session.flush()
    return row


async def seed_platform(session: AsyncSession, kernel: Any) -> None:
    by_slug = {p.slug: p for p in (await session.execute(select(GenaiProviderInstance))).scalars()}
    for spec in seeded_providers(kernel):
        if spec["slug"] not in by_slug:
            row = GenaiProviderInstance(
                **spec, description="Seeded by Kiln", enabled=True, config={}, secret_refs={}, slot={}
            )
            session.add(row)
            by_slug[row.slug] = row
    await session.flush()

    def first(*slugs: str) -> GenaiProviderInstance | None:
        return next((by_slug[s] for s in slugs if s in by_slug), None)

    base: dict[str, GenaiProviderInstance] = {
        families.EMBEDDINGS: by_slug[LOCAL_EMBEDDINGS_SLUG],
        families.VECTOR_STORE: by_slug[EMBEDDED_VECTOR_SLUG],
    }
    for capability, slug in (
        (families.LLM, "llm-local"),
        (families.MCP, "mcp-gateway-local"),
        (families.SANDBOX, "sandbox-local"),
    ):
        if provider := first(slug):
            base[capability] = provider
    default = await _ensure_deployment(
        session,
        LOCAL_DEFAULT,
        "Local default",
        "Kiln's embedded embeddings and vector store, plus the servers named in the settings.",
        base,
    )
    if qdrant := first("qdrant-local"):
        await _ensure_deployment(
            session,
            LOCAL_QDRANT,
            "Local Qdrant",
            "Local default with Qdrant as vector store.",
            {**base, families.VECTOR_STORE: qdrant},
        )
    if await session.get(GenaiActiveDeployment, "active") is None:
        from kiln.apps.genai.platform.activation import activate

        await activate(session, kernel, default.id, None, check=False)
