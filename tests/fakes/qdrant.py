"""A loopback HTTP server speaking the part of Qdrant's REST API Kiln uses: collections (create with
`vectors{size, distance}`, info, delete), payload indexes, points upsert / delete (ids or filter) /
count, and the Query API (`POST /collections/{name}/points/query`) with `must` filters of
`match{value}`, `match{any}` and `has_id`. Like Qdrant it refuses point ids that are neither
unsigned integers nor UUIDs, and vectors of another size than the collection's."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.fakes.json_routes import serve


@dataclass
class Collection:
    size: int
    points: dict[str, tuple[np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    indexes: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeQdrant:
    url: str = ""
    collections: dict[str, Collection] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _valid_id(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= 0
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


def _matches(point_id: str, payload: dict[str, Any], flt: dict[str, Any] | None) -> bool:
    for cond in (flt or {}).get("must", []):
        if "has_id" in cond:
            if point_id not in {str(i) for i in cond["has_id"]}:
                return False
            continue
        value, match = payload.get(cond["key"]), cond.get("match", {})
        if "value" in match and value != match["value"]:
            return False
        if "any" in match and value not in match["any"]:
            return False
    return True


def _route(state: FakeQdrant, method: str, path: str, body: Any) -> tuple[int, Any]:
    state.requests.append((method, path))
    if path == "/collections" and method == "GET":
        return (200, {"result": {"collections": [{"name": n} for n in state.collections]}})
    found = re.fullmatch(r"/collections/([A-Za-z0-9_\-]+)(/.*)?", path)
    if not found:
        return (404, {"status": {"error": "Not found"}})
    name, tail = found.group(1), found.group(2) or ""
    with state.lock:
        coll = state.collections.get(name)
        if tail == "" and method == "PUT":
            if coll is not None:
                return (409, {"status": {"error": f"Collection `{name}` already exists!"}})
            state.collections[name] = Collection(int(body["vectors"]["size"]))
            return (200, {"result": True, "status": "ok"})
        if coll is None:
            return (404, {"status": {"error": f"Collection `{name}` doesn't exist!"}})
        if tail == "" and method == "GET":
            return (
                200,
                {
                    "result": {
                        "status": "green",
                        "points_count": len(coll.points),
                        "config": {"params": {"vectors": {"size": coll.size, "distance": "Cosine"}}},
                    }
                },
            )
        if tail == "" and method == "DELETE":
            del state.collections[name]
            return (200, {"result": True})
        if tail == "/index" and method == "PUT":
            coll.indexes[body["field_name"]] = body["field_schema"]
            return (200, {"result": {"status": "completed"}})
        if tail == "/points" and method == "PUT":
            for point in body["points"]:
                if not _valid_id(point["id"]):
                    return (400, {"status": {"error": f"Unable to parse UUID: {point['id']}"}})
                if len(point["vector"]) != coll.size:
                    return (400, {"status": {"error": "Wrong input: Vector dimension error"}})
            for point in body["points"]:
                coll.points[str(point["id"])] = (np.asarray(point["vector"], np.float32), point.get("payload") or {})
            return (200, {"result": {"status": "completed"}})
        if tail == "/points/delete" and method == "POST":
            if "points" in body:
                for pid in body["points"]:
                    coll.points.pop(str(pid), None)
            else:
                for pid in [p for p, (_, pl) in coll.points.items() if _matches(p, pl, body.get("filter"))]:
                    del coll.points[pid]
            return (200, {"result": {"status": "completed"}})
        if tail == "/points/count" and method == "POST":
            return (200, {"result": {"count": len(coll.points)}})
        if tail == "/points/query" and method == "POST":
            query = np.asarray(body["query"], np.float32)
            if len(query) != coll.size:
                return (400, {"status": {"error": "Wrong input: Vector dimension error"}})
            scored = []
            for pid, (vector, payload) in coll.points.items():
                if _matches(pid, payload, body.get("filter")):
                    denom = float(np.linalg.norm(vector) * np.linalg.norm(query)) or 1.0
                    scored.append((float(vector @ query) / denom, pid, payload))
            scored.sort(key=lambda item: -item[0])
            points = [
                {"id": pid, "version": 1, "score": score, "payload": payload}
                for score, pid, payload in scored[: int(body.get("limit", 10))]
            ]
            return (200, {"result": {"points": points}, "status": "ok"})
    return (404, {"status": {"error": "Not found"}})


@pytest.fixture
def fake_qdrant() -> Iterator[FakeQdrant]:
    state = FakeQdrant()
    with serve(lambda method, path, body: _route(state, method, path, body)) as url:
        state.url = url
        yield state
