"""Qdrant over its REST API: collections made with the real dimension (cosine), UUID point ids,
payload indexes for filters, the Query API for search, deletes by id list or by `document_id`
filter. Every call goes through the shared provider client (timeouts, retries, offline guard)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.providers.http import ProviderClient
from kiln.providers.vectors import Filters, VectorHit, VectorStoreError, call_json, check_index_name

BATCH = 256
FIELD_SCHEMAS = {"text": "keyword", "int": "integer", "number": "float", "boolean": "bool"}


def _path(name: str, tail: str = "") -> str:
    check_index_name(name)
    return f"/collections/{name}{tail}"


def _filter(filters: Filters | None, allowed_ids: Sequence[str] | None) -> dict[str, Any] | None:
    must: list[dict[str, Any]] = [{"key": key, "match": {"value": value}} for key, value in (filters or {}).items()]
    if allowed_ids is not None and not filters:
        must.append({"has_id": list(allowed_ids)})
    return {"must": must} if must else None


class QdrantStore:
    kind = "qdrant"

    def __init__(self, client: ProviderClient):
        self.client = client

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await call_json(self.client, "Qdrant", method, path, **kwargs)

    async def health(self) -> None:
        await self._call("GET", "/collections")

    async def ensure_index(self, name: str, dimension: int, fields: Mapping[str, str] | None = None) -> None:
        try:
            info = await self._call("GET", _path(name))
            size = (((info.get("result") or {}).get("config") or {}).get("params") or {}).get("vectors", {}).get("size")
            if size is not None and int(size) != dimension:
                raise VectorStoreError(
                    "vector_dimension_mismatch", f"Collection {name} has dimension {size}, not {dimension}"
                )
            return
        except VectorStoreError as exc:
            if exc.code != "vector_index_not_found":
                raise
        await self._call("PUT", _path(name), json={"vectors": {"size": dimension, "distance": "Cosine"}})
        indexes = {"document_id": "keyword", "page_number": "integer"}
        indexes.update({key: FIELD_SCHEMAS.get(kind, "keyword") for key, kind in (fields or {}).items()})
        for field, schema in indexes.items():
            await self._call("PUT", _path(name, "/index?wait=true"), json={"field_name": field, "field_schema": schema})

    async def upsert(
        self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids) != len(vectors) or len(ids) != len(payloads):
            raise VectorStoreError("vector_records_invalid", "As many ids, vectors and payloads are needed")
        if len(ids) and vectors.ndim != 2:
            raise VectorStoreError("vector_records_invalid", "vectors must be a 2-D array")
        for start in range(0, len(ids), BATCH):
            points = [
                {"id": ids[i], "vector": vectors[i].tolist(), "payload": payloads[i]}
                for i in range(start, min(start + BATCH, len(ids)))
            ]
            await self._call("PUT", _path(name, "/points?wait=true"), json={"points": points})

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), BATCH):
            try:
                await self._call(
                    "POST", _path(name, "/points/delete?wait=true"), json={"points": list(ids[start : start + BATCH])}
                )
            except VectorStoreError as exc:
                if exc.code != "vector_index_not_found":
                    raise

    async def delete_documents(self, name: str, document_ids: Sequence[str]) -> None:
        await self._call(
            "POST",
            _path(name, "/points/delete?wait=true"),
            json={"filter": {"must": [{"key": "document_id", "match": {"any": list(document_ids)}}]}},
        )

    async def query(
        self,
        name: str,
        vector: np.ndarray,
        top_k: int,
        *,
        filters: Filters | None = None,
        allowed_ids: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        body: dict[str, Any] = {
            "query": np.asarray(vector, dtype=np.float32).tolist(),
            "limit": top_k,
            "with_payload": ["document_id", "chunk_index"],
        }
        condition = _filter(filters, allowed_ids)
        if condition:
            body["filter"] = condition
        data = await self._call("POST", _path(name, "/points/query"), json=body)
        points = (data.get("result") or {}).get("points", []) if isinstance(data, dict) else []
        return [VectorHit(str(p["id"]), float(p["score"]), p.get("payload") or {}) for p in points]

    async def drop_index(self, name: str) -> None:
        try:
            await self._call("DELETE", _path(name))
        except VectorStoreError as exc:
            if exc.code != "vector_index_not_found":
                raise

    async def count(self, name: str) -> int | None:
        try:
            data = await self._call("POST", _path(name, "/points/count"), json={"exact": True})
        except VectorStoreError as exc:
            if exc.code == "vector_index_not_found":
                return None
            raise
        return int((data.get("result") or {}).get("count", 0))

    async def flush(self, name: str) -> None:
        return None
