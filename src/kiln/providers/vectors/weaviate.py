"""Weaviate over REST + GraphQL: one class per index (CamelCase of its name, vectorizer none,
cosine), objects written in batches with per-object errors checked, search with `nearVector`
(score = 1 − cosine distance), deletes in one batch call by id or `document_id` filter (never
one call per chunk)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kiln.providers.http import ProviderClient
from kiln.providers.vectors import Filters, VectorHit, VectorStoreError, call_json, check_index_name

BATCH = 200
DATA_TYPES = {"text": "text", "int": "int", "number": "number", "boolean": "boolean"}
VALUE_KEYS = {bool: "valueBoolean", int: "valueInt", float: "valueNumber", str: "valueText"}


def class_name(index: str) -> str:
    check_index_name(index)
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-]+", index) if part)


def _literal(value: Any) -> str:
    """A GraphQL input literal (objects with bare keys; enums for `operator`)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{key}: {value[key] if key == 'operator' else _literal(value[key])}" for key in value)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    return json.dumps(value)


def _where(filters: Filters | None) -> dict[str, Any] | None:
    operands = [
        {"path": [key], "operator": "Equal", VALUE_KEYS[type(value)]: value} for key, value in (filters or {}).items()
    ]
    if not operands:
        return None
    return operands[0] if len(operands) == 1 else {"operator": "And", "operands": operands}


class WeaviateStore:
    kind = "weaviate"

    def __init__(self, client: ProviderClient):
        self.client = client

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await call_json(self.client, "Weaviate", method, path, **kwargs)

    async def _graphql(self, query: str) -> dict[str, Any]:
        data = await self._call("POST", "/v1/graphql", json={"query": query})
        if not isinstance(data, dict) or data.get("errors"):
            message = (
                (data or {}).get("errors", [{}])[0].get("message", "GraphQL error")
                if isinstance(data, dict)
                else "GraphQL error"
            )
            raise VectorStoreError("vector_store_error", f"Weaviate: {str(message)[:200]}")
        return data.get("data") or {}

    async def health(self) -> None:
        await self._call("GET", "/v1/.well-known/ready")

    async def ensure_index(self, name: str, dimension: int, fields: Mapping[str, str] | None = None) -> None:
        cls = class_name(name)
        try:
            await self._call("GET", f"/v1/schema/{cls}")
            return
        except VectorStoreError as exc:
            if exc.code != "vector_index_not_found":
                raise
        properties = [
            {"name": "document_id", "dataType": ["text"]},
            {"name": "chunk_index", "dataType": ["int"]},
            {"name": "text", "dataType": ["text"]},
            {"name": "page_number", "dataType": ["int"]},
        ]
        for key, kind in (fields or {}).items():
            properties.append({"name": key, "dataType": [DATA_TYPES.get(kind, "text")]})
        await self._call(
            "POST",
            "/v1/schema",
            json={
                "class": cls,
                "vectorizer": "none",
                "vectorIndexConfig": {"distance": "cosine"},
                "properties": properties,
            },
        )

    async def upsert(
        self, name: str, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]
    ) -> None:
        cls = class_name(name)
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(ids), BATCH):
            objects = [
                {
                    "class": cls,
                    "id": ids[i],
                    "vector": vectors[i].tolist(),
                    "properties": {k: v for k, v in payloads[i].items() if k not in ("knowledge_base_id",)},
                }
                for i in range(start, min(start + BATCH, len(ids)))
            ]
            answer = await self._call("POST", "/v1/batch/objects", json={"objects": objects})
            for item in answer or []:
                errors = ((item or {}).get("result") or {}).get("errors")
                if errors:
                    raise VectorStoreError("vector_store_error", "Weaviate refused an object of the batch")

    async def _batch_delete(self, name: str, path: str, values: Sequence[str]) -> None:
        cls = class_name(name)
        for start in range(0, len(values), BATCH):
            where = {"path": [path], "operator": "ContainsAny", "valueTextArray": list(values[start : start + BATCH])}
            try:
                await self._call("DELETE", "/v1/batch/objects", json={"match": {"class": cls, "where": where}})
            except VectorStoreError as exc:
                if exc.code != "vector_index_not_found":
                    raise

    async def delete(self, name: str, ids: Sequence[str]) -> None:
        await self._batch_delete(name, "id", ids)

    async def delete_documents(self, name: str, document_ids: Sequence[str]) -> None:
        await self._batch_delete(name, "document_id", document_ids)

    async def query(
        self,
        name: str,
        vector: np.ndarray,
        top_k: int,
        *,
        filters: Filters | None = None,
        allowed_ids: Sequence[str] | None = None,
    ) -> list[VectorHit]:
        cls = class_name(name)
        args = {"limit": int(top_k), "nearVector": {"vector": [round(float(x), 7) for x in vector]}}
        where = _where(filters)
        if where:
            args["where"] = where
        rendered = ", ".join(f"{key}: {_literal(value)}" for key, value in args.items())
        data = await self._graphql(
            f"{{ Get {{ {cls}({rendered}) {{ document_id chunk_index _additional {{ id distance }} }} }} }}"
        )
        rows = (data.get("Get") or {}).get(cls) or []
        return [
            VectorHit(
                str(row["_additional"]["id"]),
                1.0 - float(row["_additional"]["distance"]),
                {"document_id": row.get("document_id"), "chunk_index": row.get("chunk_index")},
            )
            for row in rows
        ]

    async def drop_index(self, name: str) -> None:
        try:
            await self._call("DELETE", f"/v1/schema/{class_name(name)}")
        except VectorStoreError as exc:
            if exc.code != "vector_index_not_found":
                raise

    async def count(self, name: str) -> int | None:
        cls = class_name(name)
        try:
            await self._call("GET", f"/v1/schema/{cls}")
        except VectorStoreError as exc:
            if exc.code == "vector_index_not_found":
                return None
            raise
        data = await self._graphql(f"{{ Aggregate {{ {cls} {{ meta {{ count }} }} }} }}")
        rows = (data.get("Aggregate") or {}).get(cls) or [{}]
        return int((rows[0].get("meta") or {}).get("count", 0))

    async def flush(self, name: str) -> None:
        return None
