"""Vector stores behind one port: embedded (exact numpy below a size, usearch HNSW above),
Qdrant (REST, Query API) and Weaviate (REST + GraphQL).

Records are `(id, vector, payload)`; ids are UUID strings (Qdrant and Weaviate only accept
UUIDs or integers). Payloads carry at least `document_id` and `chunk_index`; the stores that
filter natively (Qdrant, Weaviate) also get the document's metadata flattened in. Scores are
cosine similarities in [-1, 1], higher is better, whatever the store measures internally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class VectorStoreError(Exception):
    """A store failed or refused a request (`code` says which; never carries secrets)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class VectorHit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


Filters = Mapping[str, str | int | float | bool]


class VectorStore(Protocol):
    """The port. `allowed_ids` restricts a query to those records (the embedded store resolves
    metadata filters in the database and passes the ids); `filters` are exact matches on payload
    fields that remote stores apply natively."""

    kind: str

    async def ensure_index(self, name: str, dimension: int, fields: Mapping[str, str] | None = None) -> None: ...

    async def upsert(
        self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None: ...

    async def delete(self, name: str, ids: Sequence[str]) -> None: ...

    async def delete_documents(self, name: str, document_ids: Sequence[str]) -> None: ...

    async def query(
        self,
        name: str,
        vector: np.ndarray,
        top_k: int,
        *,
        filters: Filters | None = None,
        allowed_ids: Sequence[str] | None = None,
    ) -> list[VectorHit]: ...

    async def drop_index(self, name: str) -> None: ...

    async def count(self, name: str) -> int | None: ...

    async def flush(self, name: str) -> None: ...

    async def health(self) -> None: ...


async def call_json(client: Any, service: str, method: str, path: str, **kwargs: Any) -> Any:
    """One request through the shared provider client, its failures as VectorStoreError
    (404 -> `vector_index_not_found`); None for an empty body."""
    from kiln.providers.http import ProviderError

    try:
        response = await client.request(method, path, expect_ok=False, **kwargs)
    except ProviderError as exc:
        raise VectorStoreError("vector_store_unavailable", exc.message) from exc
    if response.status_code == 404:
        raise VectorStoreError("vector_index_not_found", f"{service} has no {path}")
    if response.status_code >= 400:
        raise VectorStoreError("vector_store_error", f"{service} answered HTTP {response.status_code} to {path}")
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise VectorStoreError("vector_store_error", f"{service} answered non-JSON") from None


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        norm = float(np.linalg.norm(array))
        return array / norm if norm > 0 else array
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return array / norms


INDEX_NAME = re.compile(r"[A-Za-z0-9_\-]{1,120}")


def check_index_name(name: str) -> str:
    """`name` when it can name an index in every store (a folder, a table, a collection, a class):
    1-120 ASCII letters, digits, `_` or `-`, nothing else (a trailing newline included)."""
    if not isinstance(name, str) or INDEX_NAME.fullmatch(name) is None:
        raise VectorStoreError("vector_index_invalid", "Index names are 1-120 letters, digits, _ or -")
    return name


def check_dimension(vectors: np.ndarray, dimension: int) -> None:
    if vectors.ndim != 2 or vectors.shape[1] != dimension:
        raise VectorStoreError(
            "vector_dimension_mismatch", f"Index dimension is {dimension}, vectors have {vectors.shape[-1]}"
        )
