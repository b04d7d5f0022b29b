"""One match per request: the route index chooses what FastAPI's router would, and the engine's
root dispatch hands that route to the surface so nothing matches it again."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from starlette.routing import Match, Route

from kiln.app import create_app
from kiln.core.routing import install_route_index
from tests.conftest import make_settings


def _build() -> FastAPI:
    """Nested includes with prefixes and dependencies, order-sensitive paths, a catch-all, a plain
    Starlette route, a mount and a WebSocket."""
    app = FastAPI()
    seen: list[str] = []

    async def mark() -> None:
        seen.append("dep")

    inner = APIRouter(prefix="/items")

    @inner.get("/special")
    async def special() -> dict:
        return {"route": "special", "deps": len(seen)}

    @inner.get("/{item_id}")
    async def item(item_id: int) -> dict:
        return {"route": "item", "id": item_id}

    @inner.put("/{item_id}")
    async def put_item(item_id: int) -> dict:
        return {"route": "put", "id": item_id}

    middle = APIRouter(prefix="/v1", dependencies=[Depends(mark)])
    middle.include_router(inner)

    @middle.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"route": "ws", "deps": len(seen)})
        await websocket.close()

    catch_all = APIRouter()

    @catch_all.get("/v1/{anything:path}")
    async def anything(anything: str) -> dict:
        return {"route": "catch-all", "rest": anything}

    @app.get("/")
    async def root() -> dict:
        return {"route": "root"}

    app.include_router(middle)
    app.include_router(catch_all)
    app.router.routes.append(Route("/plain", lambda request: PlainTextResponse("plain"), methods=["GET"]))
    sub = FastAPI()

    @sub.get("/inside")
    async def inside() -> dict:
        return {"route": "mounted"}

    app.mount("/mounted", sub)
    return app


REQUESTS = [
    ("GET", "/"),
    ("GET", "/v1/items/special"),
    ("GET", "/v1/items/7"),
    ("PUT", "/v1/items/7"),
    ("DELETE", "/v1/items/7"),
    ("GET", "/v1/items/x"),
    ("GET", "/v1/other/deep"),
    ("GET", "/plain"),
    ("POST", "/plain"),
    ("GET", "/mounted/inside"),
    ("GET", "/mounted/nope"),
    ("GET", "/nowhere"),
    ("GET", "/v1/items/special/"),
    ("GET", "/v1"),
]


async def _answers(app: FastAPI) -> list[tuple[int, str, str]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answers = []
        for method, path in REQUESTS:
            response = await client.request(method, path, follow_redirects=False)
            answers.append((response.status_code, response.headers.get("allow", ""), response.text))
        return answers


async def test_the_index_answers_every_request_as_the_router_does():
    indexed = _build()
    index = install_route_index(indexed)
    assert await _answers(indexed) == await _answers(_build())
    assert index.usable


def _scope(method: str, path: str, kind: str = "http") -> dict:
    return {"type": kind, "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


def test_order_partial_and_websocket_matches():
    app = _build()
    index = install_route_index(app)
    match, leaf, child = index.match(_scope("GET", "/v1/items/special"))
    assert (match, leaf.path) == (Match.FULL, "/v1/items/special")
    match, leaf, child = index.match(_scope("GET", "/v1/items/3"))
    assert (match, leaf.path, child["path_params"]) == (Match.FULL, "/v1/items/{item_id}", {"item_id": "3"})
    assert index.match(_scope("DELETE", "/v1/items/3"))[0] is Match.PARTIAL
    match, leaf, _ = index.match(_scope("GET", "/v1/ws", "websocket"))
    assert (match, leaf.path) == (Match.FULL, "/v1/ws")


async def test_websocket_through_the_index_keeps_include_dependencies():
    from starlette.testclient import TestClient

    app = _build()
    install_route_index(app)
    with TestClient(app).websocket_connect("/v1/ws") as ws:
        assert ws.receive_json() == {"route": "ws", "deps": 1}


def test_a_router_with_its_own_middleware_is_left_to_match_as_usual():
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.routing import Router

    app = FastAPI()
    app.router.middleware_stack = Router(middleware=[Middleware(GZipMiddleware)]).middleware_stack
    index = install_route_index(app)
    assert not index.enabled and not index.usable


@pytest.fixture
def counted_nested_matches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time FastAPI's nested-include router matches (it did so at each level, twice)."""
    from fastapi import routing

    calls: list[str] = []
    original = routing._IncludedRouter._match

    def counting(self, scope):  # noqa: ANN001, ANN202
        calls.append(scope["path"])
        return original(self, scope)

    monkeypatch.setattr(routing._IncludedRouter, "_match", counting)
    return calls


@pytest.fixture
def counted_path_matches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the plain routes and mounts whose pattern was tried (the root's docs routes, mounts)."""
    from starlette import routing

    tried: list[str] = []
    for kind in (routing.Route, routing.Mount):
        original = kind.matches

        def counting(self, scope, original=original):  # noqa: ANN001, ANN202
            tried.append(self.path)
            return original(self, scope)

        monkeypatch.setattr(kind, "matches", counting)
    return tried


async def test_the_engine_matches_a_surface_request_once(
    tmp_path, db_url, counted_nested_matches, counted_path_matches
):
    from asgi_lifespan import LifespanManager

    app = create_app(make_settings(tmp_path / "home", db_url), migrate=False)
    async with LifespanManager(app, startup_timeout=30):
        assert all(surface.routes.usable for surface in app.state.mounted)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for path in ("/v1/system/ping", "/genai/v1/system/ping", "/api/schema/list", "/arted/api/schema/list"):
                assert (await client.get(path)).status_code == 200, path
            assert (await client.delete("/v1/system/ping")).status_code == 405
            assert (await client.get("/no/such/route")).status_code == 404
    assert counted_nested_matches == []
    # Only the prefixed requests try a mount (/genai, /arted): nothing else is matched by pattern twice.
    assert sorted(counted_path_matches) == ["/arted", "/genai"]


def test_literal_segments_cover_every_path_a_route_matches():
    from kiln.core.routing import literal_segments, request_segments

    assert literal_segments("/v1/models/{model_id:path}/test", False) == ("v1", "models")
    assert literal_segments("/health", False) == ("health", "")
    assert literal_segments("/", False) == ("", "")
    assert literal_segments("/v1/ab{x}", False) == ("v1",)
    assert literal_segments("/{item}", False) == ()
    assert literal_segments("/static", True) == ("static",)
    assert literal_segments("", True) == ()
    assert request_segments("/health") == request_segments("/health/") == ("health", "")
    assert request_segments("/v1/models/a/b") == ("v1", "models")
