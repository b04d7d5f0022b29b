"""The embeddings and vector-store adapters a knowledge base runs on, resolved from its provider
instances: Kiln's local encoder and embedded store (one per process), OpenAI-compatible
embeddings servers, pgvector (one pooled store per database, shared by requests), Qdrant and
Weaviate (through the shared provider HTTP client: timeouts,
retries, offline guard)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import GenaiProviderInstance
from kiln.providers.embeddings import (
    LOCAL_MODEL_DIMENSION,
    LOCAL_MODEL_ID,
    EmbeddingsError,
    LocalSentenceEncoder,
    load_tokenizer,
    parse_embeddings_response,
)
from kiln.providers.http import ProviderClient, ProviderError
from kiln.providers.vectors import VectorStore
from kiln.providers.vectors.embedded import EmbeddedVectorStore

LOCAL_EMBEDDINGS = "local_embeddings"
EMBEDDED_VECTOR = "embedded_vector"
PGVECTOR = "pgvector_local"
REMOTE_EMBEDDINGS_BATCH = 64

_encoder: LocalSentenceEncoder | None = None
_stores: weakref.WeakKeyDictionary[Any, EmbeddedVectorStore] = weakref.WeakKeyDictionary()


def local_encoder() -> LocalSentenceEncoder:
    """The process's local encoder (its model loads on the first embedding, not here)."""
    global _encoder
    if _encoder is None:
        _encoder = LocalSentenceEncoder()
    return _encoder


def embedded_store(kernel: Any) -> EmbeddedVectorStore:
    store = _stores.get(kernel)
    if store is None:
        store = EmbeddedVectorStore(kernel.settings.home / "vectors")
        _stores[kernel] = store
    return store


async def get_provider(session: AsyncSession, provider_id: str | None, capability: str) -> GenaiProviderInstance:
    provider = await session.get(GenaiProviderInstance, provider_id) if provider_id and len(provider_id) <= 64 else None
    fam = families.family(provider.provider_key) if provider else None
    if provider is None or fam is None or fam.capability != capability:
        raise GenaiError(400, "invalid_provider", f"No {capability} provider instance {str(provider_id)[:64]!r}")
    if not provider.enabled:
        raise GenaiError(409, "provider_disabled", f"Provider {provider.slug} is disabled")
    return provider


def embedding_candidates(provider: GenaiProviderInstance) -> list[dict[str, Any]]:
    """Models a KB may pin on this embeddings provider without asking it (the local encoder's)."""
    if provider.provider_key == LOCAL_EMBEDDINGS:
        return [
            {
                "id": LOCAL_MODEL_ID,
                "provider_resource_id": LOCAL_MODEL_ID,
                "display_name": "all-MiniLM-L6-v2",
                "metadata": {"dimension": LOCAL_MODEL_DIMENSION, "max_tokens": 256, "local": True},
            }
        ]
    return []


class RemoteEmbeddings:
    """An OpenAI-compatible `/embeddings` server through the shared provider client."""

    def __init__(self, client: ProviderClient, model: str, path: str, dimension: int | None):
        self.client = client
        self.model_id = model
        self.path = path
        self._dimension = dimension

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        parts = []
        texts = list(texts)
        for start in range(0, len(texts), REMOTE_EMBEDDINGS_BATCH):
            batch = texts[start : start + REMOTE_EMBEDDINGS_BATCH]
            try:
                payload = await self.client.json("POST", self.path, json={"model": self.model_id, "input": batch})
            except ProviderError as exc:
                raise EmbeddingsError("embeddings_provider_error", str(exc)) from exc
            parts.append(parse_embeddings_response(payload, len(batch), self._dimension))
            self._dimension = self._dimension or int(parts[-1].shape[1])
        return np.concatenate(parts) if parts else np.empty((0, self._dimension or 0), np.float32)


async def embedder_for(
    session: AsyncSession, kernel: Any, provider_id: str | None, model: str | None, dimension: int | None
) -> Any:
    provider = await get_provider(session, provider_id, families.EMBEDDINGS)
    if provider.provider_key == LOCAL_EMBEDDINGS:
        if model not in (None, LOCAL_MODEL_ID):
            raise GenaiError(409, "embeddings_model_unavailable", f"The local provider serves {LOCAL_MODEL_ID} only")
        return local_encoder()
    from kiln.apps.genai.platform.providers import provider_client

    client = await provider_client(session, kernel, provider, "embeddings")
    path = str((provider.config or {}).get("embeddings_path") or "/embeddings")
    return RemoteEmbeddings(client, model or "", path, dimension)


def tokenizer_for(provider_key: str) -> Any:
    """The tokenizer chunking counts with: the local model's own. Remote models are counted with it
    too (a WordPiece count is within a few percent of most BPE counts; chunk_length keeps a margin)."""
    return load_tokenizer()


async def store_for(session: AsyncSession, kernel: Any, provider_id: str | None) -> VectorStore:
    provider = await get_provider(session, provider_id, families.VECTOR_STORE)
    if provider.provider_key == EMBEDDED_VECTOR:
        return embedded_store(kernel)
    if provider.provider_key == PGVECTOR:
        return await pgvector_store(session, kernel, provider)
    from kiln.apps.genai.platform.providers import provider_client

    client = await provider_client(session, kernel, provider, "vector_store")
    if provider.provider_key == "qdrant_local":
        from kiln.providers.vectors.qdrant import QdrantStore

        return QdrantStore(client)
    if provider.provider_key == "weaviate_local":
        from kiln.providers.vectors.weaviate import WeaviateStore

        return WeaviateStore(client)
    raise GenaiError(400, "invalid_provider", f"Unsupported vector store family {provider.provider_key}")


async def pgvector_store(session: AsyncSession, kernel: Any, provider: GenaiProviderInstance) -> VectorStore:
    """The process's pgvector store for this provider's DSN and password (its pool is shared)."""
    from kiln.apps.genai.platform.secrets import resolve_secret_refs
    from kiln.apps.genai.runtime.service import ensure_provider_allowed
    from kiln.providers.vectors.pgvector import shared_store

    await ensure_provider_allowed(session, genai_settings(kernel), provider, "vector_store")
    secrets = await resolve_secret_refs(session, kernel, provider.secret_refs or {})
    return shared_store(provider.endpoint_url, secrets.get("password"))


async def close_store(store: Any) -> None:
    client = getattr(store, "client", None)
    if client is not None:
        await client.aclose()
