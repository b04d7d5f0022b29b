"""The platform's embeddings and vector proof routes (superadmin): they exercise the active
deployment's embeddings and vector_store bindings end to end without going through a knowledge
base. Proof indexes hold plain records `{id, text, metadata}`; an index name a knowledge base
owns is refused, so the proof routes can never write into a KB."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Body
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context import runtime as rt
from kiln.apps.genai.context.ingest import IngestError, embed_checked
from kiln.apps.genai.context.models import KnowledgeBase
from kiln.apps.genai.deps import KernelDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import active_deployment_id, bindings_of
from kiln.providers.embeddings import EmbeddingsError
from kiln.providers.http import ProviderError
from kiln.providers.vectors import VectorStoreError

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)
INDEX_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
RECORD_NS = uuid.UUID("a3e1c0de-7d1b-4f55-b1a9-0c9e5e1f2b64")
MAX_TEXTS = 256
MAX_TEXT_CHARS = 20_000


async def _active(session: AsyncSession, capability: str) -> tuple[Any, Any, list[Any]]:
    deployment = await active_deployment_id(session)
    for binding, provider, resources in (await bindings_of(session, deployment)) if deployment else []:
        if binding.capability_key == capability:
            return binding, provider, resources
    raise GenaiError(409, "capability_not_bound", f"The active deployment has no {capability} binding")


async def _embedder(session: AsyncSession, kernel: Any) -> tuple[Any, Any]:
    _, provider, resources = await _active(session, families.EMBEDDINGS)
    default = next((r for r in resources if r.is_default), None)
    model = (default.provider_resource_id or default.resource_id) if default else None
    return provider, await rt.embedder_for(session, kernel, provider.id, model, None)


def _texts(value: Any) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if (
        not isinstance(texts, list)
        or not 0 < len(texts) <= MAX_TEXTS
        or not all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT_CHARS for t in texts)
    ):
        raise GenaiError(400, "invalid_payload", f"input must be 1..{MAX_TEXTS} non-empty strings")
    return texts


async def _index(session: AsyncSession, body: dict[str, Any]) -> str:
    name = body.get("index")
    if not isinstance(name, str) or not INDEX_RE.match(name):
        raise GenaiError(400, "invalid_index", "index must be a letter then letters, digits or _ (at most 100)")
    owned = (await session.execute(select(KnowledgeBase.index_name))).scalars()
    if any(name == own or re.fullmatch(re.escape(own) + r"_g\d+", name) for own in owned):
        raise GenaiError(409, "index_owned_by_knowledge_base", "A knowledge base owns this index")
    return name


def _failure(exc: Exception) -> GenaiError:
    if isinstance(exc, VectorStoreError):
        return GenaiError(404 if exc.code == "vector_index_not_found" else 502, exc.code, exc.message)
    return GenaiError(502, "embeddings_provider_error", getattr(exc, "message", None) or str(exc))


@asynccontextmanager
async def _guarded(*closing: Any) -> AsyncIterator[None]:
    """Provider failures as the envelope; the adapters' clients closed in any case."""
    try:
        yield
    except (EmbeddingsError, IngestError, VectorStoreError, ProviderError) as exc:
        raise _failure(exc) from exc
    finally:
        for thing in closing:
            await rt.close_store(thing)


@router.post("/v1/platform/embeddings")
async def embeddings(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    texts = _texts(body.get("input", body.get("texts")))
    provider, embedder = await _embedder(session, kernel)
    async with _guarded(embedder):
        vectors = await embed_checked(embedder, texts, None)
    return {
        "provider": {"id": provider.id, "slug": provider.slug, "provider_key": provider.provider_key},
        "model": embedder.model_id,
        "dimension": int(vectors.shape[1]),
        "count": len(texts),
        "embeddings": [[round(float(x), 7) for x in row] for row in vectors],
    }


async def _store(session: AsyncSession, kernel: Any) -> tuple[Any, Any]:
    _, provider, _ = await _active(session, families.VECTOR_STORE)
    return provider, await rt.store_for(session, kernel, provider.id)


@router.post("/v1/platform/vector/indexes/ensure")
async def ensure_index(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    name = await _index(session, body)
    dimension = body.get("dimension")
    if dimension is None:
        _, embedder = await _embedder(session, kernel)
        async with _guarded(embedder):
            dimension = embedder.dimension or int((await embed_checked(embedder, ["probe"], None)).shape[1])
    if not isinstance(dimension, int) or isinstance(dimension, bool) or not 1 <= dimension <= 8192:
        raise GenaiError(400, "invalid_dimension", "dimension must be an integer 1..8192")
    provider, store = await _store(session, kernel)
    async with _guarded(store):
        await store.ensure_index(name, dimension)
        await store.flush(name)
    return {
        "index": {
            "name": name,
            "dimension": dimension,
            "provider_id": provider.id,
            "provider_key": provider.provider_key,
        }
    }


@router.post("/v1/platform/vector/documents/upsert")
async def upsert(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    name = await _index(session, body)
    documents = body.get("documents")
    if not isinstance(documents, list) or not 0 < len(documents) <= MAX_TEXTS:
        raise GenaiError(400, "invalid_payload", f"documents must be a list of 1..{MAX_TEXTS}")
    ids, texts, payloads = [], [], []
    for doc in documents:
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not 0 < len(doc["id"]) <= 200:
            raise GenaiError(400, "invalid_payload", "every document needs a string id")
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise GenaiError(400, "invalid_payload", "metadata must be an object")
        texts.append(_texts(doc.get("text"))[0])
        ids.append(doc["id"])
        payloads.append({"document_id": doc["id"], "text": texts[-1], "metadata": metadata})
    _, embedder = await _embedder(session, kernel)
    provider, store = await _store(session, kernel)
    async with _guarded(store, embedder):
        vectors = await embed_checked(embedder, texts, None)
        await store.upsert(name, [str(uuid.uuid5(RECORD_NS, f"{name}:{i}")) for i in ids], vectors, payloads)
        await store.flush(name)
    return {"index": name, "count": len(ids), "ids": ids}


@router.post("/v1/platform/vector/query")
async def vector_query(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    name = await _index(session, body)
    text = _texts(body.get("query_text"))[0]
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 100:
        raise GenaiError(400, "invalid_top_k", "top_k must be an integer 1..100")
    _, embedder = await _embedder(session, kernel)
    provider, store = await _store(session, kernel)
    async with _guarded(store, embedder):
        vector = (await embed_checked(embedder, [text], None))[0]
        hits = await store.query(name, vector, top_k)
    return {
        "index": name,
        "results": [
            {
                "id": h.payload.get("document_id", h.id),
                "text": h.payload.get("text"),
                "metadata": h.payload.get("metadata") or {},
                "score": round(h.score, 6),
            }
            for h in hits
        ],
    }


@router.post("/v1/platform/vector/documents/delete")
async def delete(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    name = await _index(session, body)
    ids = body.get("ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= 1000 or not all(isinstance(i, str) for i in ids):
        raise GenaiError(400, "invalid_payload", "ids must be a list of 1..1000 strings")
    provider, store = await _store(session, kernel)
    async with _guarded(store):
        await store.delete(name, [str(uuid.uuid5(RECORD_NS, f"{name}:{i}")) for i in ids])
        await store.flush(name)
    return {"index": name, "deleted": len(ids)}
