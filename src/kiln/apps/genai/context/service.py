"""Knowledge bases, schema profiles and vectorization options: plain functions over a session."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context import runtime as rt
from kiln.apps.genai.context.ingest import physical_index
from kiln.apps.genai.context.models import Document, KnowledgeBase, SchemaProfile
from kiln.apps.genai.context.schema import VECTOR_FAMILIES, check_schema, system_profiles
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import GenaiBindingResource, GenaiProviderInstance
from kiln.providers.embeddings import EmbeddingsError
from kiln.providers.http import ProviderError
from kiln.providers.vectors import VectorStoreError

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
LIFECYCLE = ("active", "archived")
LOCAL_SAFE_MAX_TOKENS = 254  # 256 minus [CLS] and [SEP]
MAX_CHUNK_LENGTH = 8192


def _text(body: dict[str, Any], key: str, limit: int, *, required: bool = False, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise GenaiError(
            400,
            "invalid_payload",
            f"{key} must be a string of at most {limit} characters" + (" (required)" if required else ""),
            {"field": key},
        )
    return value.strip()


# ------------------------------------------------------------------------------ profiles, options


async def list_schema_profiles(session: AsyncSession, provider_key: str | None) -> list[dict[str, Any]]:
    query = select(SchemaProfile).order_by(SchemaProfile.provider_key, SchemaProfile.slug)
    if provider_key:
        query = query.where(SchemaProfile.provider_key == provider_key)
    custom = [profile_dto(row) for row in (await session.execute(query)).scalars()]
    return system_profiles(provider_key) + custom


def profile_dto(row: SchemaProfile) -> dict[str, Any]:
    return {
        "id": row.id,
        "slug": row.slug,
        "display_name": row.display_name,
        "description": row.description,
        "provider_key": row.provider_key,
        "is_system": row.is_system,
        "schema": row.schema_json,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


async def create_schema_profile(session: AsyncSession, body: dict[str, Any]) -> dict[str, Any]:
    slug = _text(body, "slug", 100, required=True)
    if not SLUG_RE.match(slug):
        raise GenaiError(400, "invalid_slug", "slug must be lower-case letters, digits, - or _")
    provider_key = _text(body, "provider_key", 80, required=True)
    if provider_key not in VECTOR_FAMILIES:
        raise GenaiError(400, "invalid_provider_key", f"provider_key must be one of {', '.join(VECTOR_FAMILIES)}")
    taken = any(p["slug"] == slug for p in system_profiles(provider_key)) or await session.scalar(
        select(SchemaProfile.id).where(SchemaProfile.provider_key == provider_key, SchemaProfile.slug == slug)
    )
    if taken:
        raise GenaiError(409, "schema_profile_exists", "A schema profile with this slug exists for the provider")
    row = SchemaProfile(
        slug=slug,
        provider_key=provider_key,
        is_system=False,
        display_name=_text(body, "display_name", 200, required=True),
        description=_text(body, "description", 2000),
        schema_json=check_schema(body.get("schema")),
    )
    session.add(row)
    await session.commit()
    return profile_dto(row)


async def vectorization_options(session: AsyncSession) -> dict[str, Any]:
    providers = (
        (
            await session.execute(
                select(GenaiProviderInstance)
                .where(GenaiProviderInstance.enabled.is_(True))
                .order_by(GenaiProviderInstance.slug)
            )
        )
        .scalars()
        .all()
    )
    embeddings, stores = [], []
    for provider in providers:
        fam = families.family(provider.provider_key)
        if fam is None:
            continue
        summary = {
            "id": provider.id,
            "slug": provider.slug,
            "provider_key": provider.provider_key,
            "display_name": provider.display_name,
            "provider_origin": fam.provider_origin,
        }
        if fam.capability == families.EMBEDDINGS:
            embeddings.append({**summary, "resources": rt.embedding_candidates(provider)})
        elif fam.capability == families.VECTOR_STORE:
            stores.append(summary)
    return {
        "modes": [
            {"mode": "vanessa_embeddings", "requires_embeddings_target": True},
            {"mode": "self_provided", "requires_embeddings_target": False},
        ],
        "embedding_providers": embeddings,
        "vector_store_providers": stores,
        "chunking": {
            "strategies": ["fixed_length"],
            "units": ["tokens"],
            "defaults": {"chunk_length": 300, "chunk_overlap": 60},
            "local_max_chunk_length": LOCAL_SAFE_MAX_TOKENS,
        },
    }


# ------------------------------------------------------------------------------ knowledge bases


async def get_kb(session: AsyncSession, kb_id: str) -> KnowledgeBase:
    kb = await session.get(KnowledgeBase, kb_id) if len(kb_id) <= 64 else None
    if kb is None:
        raise GenaiError(404, "knowledge_base_not_found", "Knowledge base not found")
    return kb


async def binding_count(session: AsyncSession, kb_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(GenaiBindingResource)
            .where(GenaiBindingResource.knowledge_base_id == kb_id)
        )
        or 0
    )


def kb_dto(kb: KnowledgeBase, *, bindings: int = 0, provider: GenaiProviderInstance | None = None) -> dict[str, Any]:
    return {
        "id": kb.id,
        "slug": kb.slug,
        "display_name": kb.display_name,
        "description": kb.description,
        "index_name": kb.index_name,
        "active_index": physical_index(kb),
        "generation": kb.generation,
        "backing_provider_instance_id": kb.backing_provider_instance_id,
        "backing_provider_key": kb.backing_provider_key,
        "backing_provider": (
            {
                "id": provider.id,
                "slug": provider.slug,
                "provider_key": provider.provider_key,
                "display_name": provider.display_name,
            }
            if provider
            else None
        ),
        "lifecycle_state": kb.lifecycle_state,
        "sync_status": kb.sync_status,
        "schema": kb.schema_json,
        "vectorization": {
            "mode": kb.vectorization_mode,
            "embedding_provider_instance_id": kb.embedding_provider_instance_id,
            "embedding_resource_id": kb.embedding_resource_id,
            "embedding_model": kb.embedding_model,
            "embedding_dimension": kb.embedding_dimension,
            **(kb.vectorization_json or {}),
        },
        "chunking": {"strategy": kb.chunking_strategy, "config": kb.chunking_config_json},
        "document_count": kb.document_count,
        "chunk_count": kb.chunk_count,
        "binding_count": bindings,
        "eligible_for_binding": kb.lifecycle_state == "active" and kb.sync_status == "ready",
        "last_sync_at": kb.last_sync_at.isoformat() if kb.last_sync_at else None,
        "last_sync_error": kb.last_sync_error,
        "last_sync_summary": kb.last_sync_summary,
        "created_by_user_id": kb.created_by_user_id,
        "updated_by_user_id": kb.updated_by_user_id,
        "created_at": kb.created_at.isoformat(),
        "updated_at": kb.updated_at.isoformat(),
    }


async def kb_detail(session: AsyncSession, kb: KnowledgeBase) -> dict[str, Any]:
    provider = await session.get(GenaiProviderInstance, kb.backing_provider_instance_id or "")
    return kb_dto(kb, bindings=await binding_count(session, kb.id), provider=provider)


async def list_kbs(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.execute(select(KnowledgeBase).order_by(KnowledgeBase.created_at))).scalars().all()
    counts = dict(
        (
            await session.execute(
                select(GenaiBindingResource.knowledge_base_id, func.count())
                .where(GenaiBindingResource.knowledge_base_id.is_not(None))
                .group_by(GenaiBindingResource.knowledge_base_id)
            )
        ).all()
    )
    return [kb_dto(kb, bindings=int(counts.get(kb.id, 0))) for kb in rows]


def check_chunking(value: Any, local: bool) -> dict[str, Any]:
    value = value or {}
    if not isinstance(value, dict):
        raise GenaiError(400, "invalid_chunking", "chunking must be an object")
    strategy = value.get("strategy", "fixed_length")
    config = value.get("config") or {}
    if strategy != "fixed_length" or not isinstance(config, dict) or config.get("unit", "tokens") != "tokens":
        raise GenaiError(400, "invalid_chunking", "Only the fixed_length strategy in tokens is supported")
    length, overlap = config.get("chunk_length", 300), config.get("chunk_overlap", 60)
    if (
        not all(isinstance(v, int) and not isinstance(v, bool) for v in (length, overlap))
        or not 1 <= length <= MAX_CHUNK_LENGTH
        or not 0 <= overlap < length
    ):
        raise GenaiError(400, "invalid_chunking", "chunk_length must be 1..8192 and 0 <= chunk_overlap < chunk_length")
    if local and length > LOCAL_SAFE_MAX_TOKENS:
        raise GenaiError(
            400,
            "knowledge_base_chunking_exceeds_embeddings_limit",
            f"chunk_length {length} exceeds the model's limit of {LOCAL_SAFE_MAX_TOKENS} tokens",
            {"safe_max_chunk_length": LOCAL_SAFE_MAX_TOKENS},
        )
    return {"strategy": "fixed_length", "config": {"unit": "tokens", "chunk_length": length, "chunk_overlap": overlap}}


async def _pin_embeddings(session: AsyncSession, kernel: Any, vectorization: dict[str, Any]) -> dict[str, Any]:
    provider = await rt.get_provider(session, vectorization.get("embedding_provider_instance_id"), families.EMBEDDINGS)
    resource = vectorization.get("embedding_resource_id")
    candidates = rt.embedding_candidates(provider)
    if provider.provider_key == rt.LOCAL_EMBEDDINGS:
        resource = resource or candidates[0]["id"]
        if resource not in {c["id"] for c in candidates}:
            raise GenaiError(400, "invalid_embedding_resource", "The local provider serves all-MiniLM-L6-v2 only")
        return {
            "provider": provider,
            "resource": resource,
            "model": resource,
            "dimension": 384,
            "descriptor": candidates[0],
        }
    if not isinstance(resource, str) or not resource or len(resource) > 255:
        raise GenaiError(400, "invalid_embedding_resource", "embedding_resource_id is required")
    embedder = await rt.embedder_for(session, kernel, provider.id, resource, None)
    try:
        probe = await embedder.embed(["dimension probe"])
    except (EmbeddingsError, ProviderError) as exc:
        raise GenaiError(409, "embeddings_provider_unavailable", f"Embeddings provider did not embed: {exc}") from exc
    finally:
        await rt.close_store(embedder)
    return {
        "provider": provider,
        "resource": resource,
        "model": resource,
        "dimension": int(probe.shape[1]),
        "descriptor": {
            "id": resource,
            "provider_resource_id": resource,
            "display_name": resource,
            "metadata": {"dimension": int(probe.shape[1])},
        },
    }


async def create_kb(session: AsyncSession, kernel: Any, body: dict[str, Any], user_id: str | None) -> KnowledgeBase:
    slug = _text(body, "slug", 100, required=True).lower()
    if not SLUG_RE.match(slug):
        raise GenaiError(400, "invalid_slug", "slug must be lower-case letters, digits, - or _")
    index_name = "kb_" + re.sub(r"[^a-z0-9_]", "_", slug)
    if await session.scalar(
        select(KnowledgeBase.id).where((KnowledgeBase.slug == slug) | (KnowledgeBase.index_name == index_name))
    ):
        raise GenaiError(409, "knowledge_base_exists", "A knowledge base with this slug exists")
    store_provider = await rt.get_provider(session, body.get("backing_provider_instance_id"), families.VECTOR_STORE)
    lifecycle = body.get("lifecycle_state", "active")
    if lifecycle not in LIFECYCLE:
        raise GenaiError(400, "invalid_lifecycle_state", "lifecycle_state must be active or archived")
    vectorization = body.get("vectorization") or {"mode": "vanessa_embeddings"}
    if not isinstance(vectorization, dict) or vectorization.get("mode", "vanessa_embeddings") not in (
        "vanessa_embeddings",
        "self_provided",
    ):
        raise GenaiError(400, "invalid_vectorization", "vectorization.mode must be vanessa_embeddings or self_provided")
    kb = KnowledgeBase(
        slug=slug,
        index_name=index_name,
        display_name=_text(body, "display_name", 200, required=True),
        description=_text(body, "description", 4000),
        backing_provider_instance_id=store_provider.id,
        backing_provider_key=store_provider.provider_key,
        lifecycle_state=lifecycle,
        schema_json=check_schema(body.get("schema")),
        generation=1,
        sync_status="syncing",
        created_by_user_id=user_id,
        updated_by_user_id=user_id,
        document_count=0,
        chunk_count=0,
    )
    if vectorization.get("mode", "vanessa_embeddings") == "self_provided":
        if vectorization.get("embedding_provider_instance_id") or vectorization.get("embedding_resource_id"):
            raise GenaiError(400, "invalid_vectorization", "self_provided takes no embeddings target")
        kb.vectorization_mode = "self_provided"
        kb.vectorization_json = {"supports_named_vectors": False, "named_vectors": []}
        local = False
    else:
        if not vectorization.get("embedding_provider_instance_id"):
            vectorization = {
                **vectorization,
                "embedding_provider_instance_id": await session.scalar(
                    select(GenaiProviderInstance.id).where(GenaiProviderInstance.provider_key == rt.LOCAL_EMBEDDINGS)
                ),
            }
        pinned = await _pin_embeddings(session, kernel, vectorization)
        kb.vectorization_mode = "vanessa_embeddings"
        kb.embedding_provider_instance_id = pinned["provider"].id
        kb.embedding_resource_id = pinned["resource"]
        kb.embedding_model = pinned["model"]
        kb.embedding_dimension = pinned["dimension"]
        kb.vectorization_json = {
            "supports_named_vectors": False,
            "named_vectors": [],
            "default_vector_space": {
                "name": "default",
                "mode": "vanessa_embeddings",
                "embedding_resource_id": pinned["resource"],
            },
            "embedding_resource": pinned["descriptor"],
        }
        local = pinned["provider"].provider_key == rt.LOCAL_EMBEDDINGS
    chunking = check_chunking(body.get("chunking"), local)
    kb.chunking_strategy, kb.chunking_config_json = chunking["strategy"], chunking["config"]
    session.add(kb)
    await session.commit()
    try:
        store = await rt.store_for(session, kernel, kb.backing_provider_instance_id)
        try:
            await store.ensure_index(physical_index(kb), int(kb.embedding_dimension or 384))
            await store.flush(physical_index(kb))
        finally:
            await rt.close_store(store)
        kb.sync_status, kb.last_sync_error = "ready", None
    except (VectorStoreError, ProviderError) as exc:
        kb.sync_status, kb.last_sync_error = "error", str(exc)[:500]
    await session.commit()
    return kb


async def update_kb(session: AsyncSession, kb: KnowledgeBase, body: dict[str, Any], user_id: str | None) -> None:
    if not isinstance(body, dict):
        raise GenaiError(400, "invalid_payload", "Body must be an object")
    for key in ("slug", "index_name", "backing_provider_instance_id", "vectorization"):
        if key in body and body[key] is not None:
            current = {
                "slug": kb.slug,
                "index_name": kb.index_name,
                "backing_provider_instance_id": kb.backing_provider_instance_id,
            }.get(key)
            if key == "vectorization" or body[key] != current:
                if key == "vectorization" and _same_vectorization(kb, body[key]):
                    continue
                raise GenaiError(409, f"{key}_immutable", f"{key} cannot change after creation")
    if "display_name" in body:
        kb.display_name = _text(body, "display_name", 200, required=True)
    if "description" in body:
        kb.description = _text(body, "description", 4000)
    if "lifecycle_state" in body:
        if body["lifecycle_state"] not in LIFECYCLE:
            raise GenaiError(400, "invalid_lifecycle_state", "lifecycle_state must be active or archived")
        if (
            body["lifecycle_state"] == "archived"
            and kb.lifecycle_state != "archived"
            and await binding_count(session, kb.id)
        ):
            raise GenaiError(409, "knowledge_base_in_use", "A deployment binding uses this knowledge base")
        kb.lifecycle_state = body["lifecycle_state"]
    if "schema" in body:
        schema = check_schema(body["schema"])
        if schema != kb.schema_json and kb.document_count:
            raise GenaiError(409, "schema_immutable", "The schema cannot change once documents exist")
        kb.schema_json = schema
    if "chunking" in body and body["chunking"] is not None:
        chunking = check_chunking(
            body["chunking"],
            kb.embedding_dimension == 384
            and kb.embedding_model is not None
            and kb.embedding_model.endswith("all-MiniLM-L6-v2"),
        )
        if chunking["config"] != kb.chunking_config_json:
            has_docs = await session.scalar(
                select(func.count()).select_from(Document).where(Document.knowledge_base_id == kb.id)
            )
            if has_docs:
                raise GenaiError(409, "chunking_immutable", "Chunking cannot change once documents exist")
            kb.chunking_config_json = chunking["config"]
    kb.updated_by_user_id = user_id
    await session.commit()


def _same_vectorization(kb: KnowledgeBase, value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    return (
        value.get("mode", kb.vectorization_mode) == kb.vectorization_mode
        and value.get("embedding_provider_instance_id", kb.embedding_provider_instance_id)
        == kb.embedding_provider_instance_id
        and value.get("embedding_resource_id", kb.embedding_resource_id) == kb.embedding_resource_id
    )


DELETE_ATTEMPTS = 3


async def delete_kb(session: AsyncSession, kernel: Any, kb: KnowledgeBase) -> None:
    if await binding_count(session, kb.id):
        raise GenaiError(409, "knowledge_base_in_use", "A deployment binding uses this knowledge base")
    store = await rt.store_for(session, kernel, kb.backing_provider_instance_id)
    try:
        for generation in (kb.generation, kb.generation + 1):
            await store.drop_index(physical_index(kb, generation))
    except (VectorStoreError, ProviderError) as exc:
        raise GenaiError(409, "vector_store_unavailable", f"The vector store did not drop the index: {exc}") from exc
    finally:
        await rt.close_store(store)
    for attempt in range(DELETE_ATTEMPTS):
        try:
            await session.delete(kb)
            await session.commit()
            return
        except DBAPIError as exc:
            # A sync job writing this KB's chunks while the cascade deletes them can deadlock on
            # PostgreSQL; the database aborts one side, and the delete is simply tried again.
            await session.rollback()
            if "deadlock" not in str(exc.orig).lower():
                raise
            if attempt == DELETE_ATTEMPTS - 1:
                raise GenaiError(
                    409, "knowledge_base_busy", "A sync of this knowledge base is writing; try the delete again"
                ) from None


async def knowledge_base_resource(
    session: AsyncSession, provider: GenaiProviderInstance, item: dict[str, Any]
) -> dict[str, Any]:
    """A vector_store binding resource naming a KB: it must exist, be eligible (active and ready)
    and be backed by the binding's own provider instance."""
    kb_id = str(item.get("knowledge_base_id") or item.get("id") or "")
    kb = await session.get(KnowledgeBase, kb_id) if 0 < len(kb_id) <= 64 else None
    if kb is None:
        raise GenaiError(400, "knowledge_base_not_found", "The binding names no existing knowledge base")
    if kb.backing_provider_instance_id != provider.id:
        raise GenaiError(
            400,
            "knowledge_base_provider_mismatch",
            "The knowledge base is backed by another vector store provider than the binding's",
        )
    if not (kb.lifecycle_state == "active" and kb.sync_status == "ready"):
        raise GenaiError(400, "knowledge_base_not_eligible", "Only active, ready knowledge bases can be bound")
    return {
        "resource_id": kb.id,
        "resource_kind": "knowledge_base",
        "ref_type": "knowledge_base",
        "knowledge_base_id": kb.id,
        "provider_resource_id": kb.index_name,
        "display_name": kb.display_name,
        "resource_metadata": {
            "slug": kb.slug,
            "embedding_model": kb.embedding_model,
            "embedding_dimension": kb.embedding_dimension,
        },
    }
