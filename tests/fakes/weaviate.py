"""A loopback HTTP server speaking the part of Weaviate's REST + GraphQL API Kiln uses: readiness,
schema classes (get, create with `vectorizer: none`, delete), `POST /v1/batch/objects` (per-object
results, errors for a wrong vector length), `DELETE /v1/batch/objects` by a `where` filter
(`ContainsAny` / `Equal` on `id` or a property), and GraphQL `Get { Class(limit, nearVector,
where) { ... _additional { id distance } } }` and `Aggregate { Class { meta { count } } }`.
GraphQL input literals are read by turning them into JSON (bare keys and enum values quoted)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.fakes.json_routes import serve

ENUMS = ("Equal", "And", "Or", "ContainsAny")


@dataclass
class WeaviateClass:
    properties: list[dict[str, Any]]
    size: int | None = None
    objects: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class FakeWeaviate:
    url: str = ""
    classes: dict[str, WeaviateClass] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def graphql_literal(text: str) -> Any:
    text = re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:", r'\1"\2":', "{" + text + "}")
    text = re.sub(r":\s*(" + "|".join(ENUMS) + r")\b", r': "\1"', text)
    return json.loads(text)


def _value(cond: dict[str, Any]) -> Any:
    return next(v for k, v in cond.items() if k.startswith("value"))


def _where(object_id: str, props: dict[str, Any], cond: dict[str, Any] | None) -> bool:
    if not cond:
        return True
    if cond["operator"] == "And":
        return all(_where(object_id, props, c) for c in cond["operands"])
    if cond["operator"] == "Or":
        return any(_where(object_id, props, c) for c in cond["operands"])
    value = object_id if cond["path"] == ["id"] else props.get(cond["path"][0])
    if cond["operator"] == "ContainsAny":
        return value in _value(cond)
    return value == _value(cond)


def _graphql(state: FakeWeaviate, query: str) -> tuple[int, Any]:
    agg = re.search(r"Aggregate\s*{\s*(\w+)", query)
    if agg:
        cls = state.classes.get(agg.group(1))
        if cls is None:
            return (200, {"errors": [{"message": f"class {agg.group(1)} not found"}]})
        return (200, {"data": {"Aggregate": {agg.group(1): [{"meta": {"count": len(cls.objects)}}]}}})
    found = re.search(r"Get\s*{\s*(\w+)\((.*)\)\s*{", query, re.S)
    if not found or found.group(1) not in state.classes:
        return (200, {"errors": [{"message": "cannot query that class"}]})
    name, args = found.group(1), graphql_literal(found.group(2))
    cls = state.classes[name]
    vector = np.asarray(args["nearVector"]["vector"], np.float32)
    if cls.size is not None and len(vector) != cls.size:
        return (200, {"errors": [{"message": "vector lengths don't match"}]})
    scored = []
    for oid, (vec, props) in cls.objects.items():
        if _where(oid, props, args.get("where")):
            cosine = float(vec @ vector) / (float(np.linalg.norm(vec) * np.linalg.norm(vector)) or 1.0)
            scored.append((1.0 - cosine, oid, props))
    scored.sort(key=lambda item: item[0])
    rows = [
        {**props, "_additional": {"id": oid, "distance": distance}}
        for distance, oid, props in scored[: int(args.get("limit", 10))]
    ]
    return (200, {"data": {"Get": {name: rows}}})


def _route(state: FakeWeaviate, method: str, path: str, body: Any) -> tuple[int, Any]:
    state.requests.append((method, path))
    with state.lock:
        if path == "/v1/.well-known/ready":
            return 200, None
        if path == "/v1/graphql" and method == "POST":
            return _graphql(state, body["query"])
        found = re.fullmatch(r"/v1/schema/(\w+)", path)
        if found:
            cls = state.classes.get(found.group(1))
            if cls is None:
                return 404, None
            if method == "DELETE":
                del state.classes[found.group(1)]
                return 200, None
            return (200, {"class": found.group(1), "properties": cls.properties})
        if path == "/v1/schema" and method == "POST":
            if body["class"] in state.classes:
                return (422, {"error": [{"message": "class already exists"}]})
            state.classes[body["class"]] = WeaviateClass(body.get("properties", []))
            return (200, body)
        if path == "/v1/batch/objects" and method == "POST":
            results = []
            for obj in body["objects"]:
                cls = state.classes.get(obj["class"])
                vector = np.asarray(obj["vector"], np.float32)
                if cls is None or (cls.size is not None and len(vector) != cls.size):
                    results.append({**obj, "result": {"errors": {"error": [{"message": "refused"}]}}})
                    continue
                cls.size = cls.size or len(vector)
                cls.objects[obj["id"]] = (vector, obj.get("properties") or {})
                results.append({"id": obj["id"], "result": {}})
            return (200, results)
        if path == "/v1/batch/objects" and method == "DELETE":
            match = body["match"]
            cls = state.classes.get(match["class"])
            if cls is None:
                return (422, {"error": [{"message": "no such class"}]})
            gone = [oid for oid, (_, props) in cls.objects.items() if _where(oid, props, match["where"])]
            for oid in gone:
                del cls.objects[oid]
            return (200, {"results": {"matches": len(gone), "successful": len(gone)}})
    return 404, None


@pytest.fixture
def fake_weaviate() -> Iterator[FakeWeaviate]:
    state = FakeWeaviate()
    with serve(lambda method, path, body: _route(state, method, path, body)) as url:
        state.url = url
        yield state
