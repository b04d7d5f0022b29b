"""The genai routers' literal-prefix guard: a path none of a router's routes can match is turned
away without trying them, and nothing that matched before stops matching."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from kiln.apps.genai.routing import PrefixGuardedRouter, literal_prefix


def _scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the routes whose pattern was tried, in order."""
    seen: list[str] = []
    original = APIRoute.matches

    def counting(self: APIRoute, scope: dict) -> tuple[Match, dict]:
        seen.append(self.path)
        return original(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    return seen


def _app() -> tuple[FastAPI, PrefixGuardedRouter]:
    items = PrefixGuardedRouter(prefix="/v1/items")

    @items.get("/{item_id}")
    async def get_item(item_id: str) -> dict:
        return {"item": item_id}

    @items.post("/things")
    async def make_thing() -> dict:
        return {"made": True}

    top = PrefixGuardedRouter()
    top.include_router(items)
    plain = APIRouter()

    @plain.get("/v1/plain")
    async def plain_route() -> dict:
        return {"plain": True}

    top.include_router(plain, prefix="/x")
    app = FastAPI()
    app.include_router(top)
    return app, top


def test_literal_prefix_is_the_text_before_the_first_parameter():
    assert literal_prefix("/v1/models/{model_id:path}/test") == "/v1/models/"
    assert literal_prefix("/v1/system/ping") == "/v1/system/ping"


def test_prefixes_cover_included_routers_and_their_include_prefix():
    _, top = _app()
    assert top.literal_prefixes() == ("/v1/items/", "/v1/items/things", "/x/v1/plain")


def test_a_foreign_path_is_refused_without_trying_a_route(tried):
    _, top = _app()
    assert top.matches(_scope("GET", "/v1/other/1"))[0] is Match.NONE
    assert tried == []


async def test_matching_paths_still_reach_their_routes():
    app, _ = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/v1/items/7")).json() == {"item": "7"}
        assert (await client.post("/v1/items/things")).json() == {"made": True}
        assert (await client.get("/x/v1/plain")).json() == {"plain": True}
        assert (await client.delete("/v1/items/7")).status_code == 405  # a partial match stays a partial match
        assert (await client.get("/v1/nowhere")).status_code == 404


async def test_a_route_added_after_the_first_request_is_reachable():
    app, top = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/v1/late")).status_code == 404
        late = PrefixGuardedRouter()

        @late.get("/v1/late")
        async def late_route() -> dict:
            return {"late": True}

        top.include_router(late)
        app.router.routes.clear()
        app.include_router(top)
        assert (await client.get("/v1/late")).json() == {"late": True}


def test_an_unknown_kind_of_route_turns_the_guard_off():
    router = PrefixGuardedRouter()

    @router.get("/v1/a")
    async def a() -> dict:
        return {}

    router.routes.append(object())  # type: ignore[arg-type]  (something the guard cannot read)
    assert router.literal_prefixes() is None


def test_the_genai_hot_routes_are_matched_after_a_few_tries(tried):
    from kiln.apps.genai.router import router

    for path in ("/v1/models/inference", "/v1/playgrounds/sessions/abc/messages/stream"):
        tried.clear()
        app = FastAPI()
        app.include_router(router)
        assert any(route.matches(_scope("POST", path))[0] is Match.FULL for route in app.router.routes)
        assert 0 < len(tried) <= 5, (path, tried)
