"""Surfaces side by side: each served whole under its prefix and at the root, collisions going to
the first surface in KILN_APPS order (and logged), prefixes in the URLs of response bodies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from kiln.app import create_app
from tests.conftest import make_settings
from tests.core.fake_surface import as_surface


@asynccontextmanager
async def serving(tmp_path: Path, db_url: str, **overrides: object) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    app = create_app(make_settings(tmp_path / "home", db_url, **overrides), migrate=False)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


@pytest.fixture
def lora(monkeypatch: pytest.MonkeyPatch) -> str:
    as_surface(monkeypatch, "lora")
    return "lora"


async def test_each_surface_whole_under_its_prefix_and_at_the_root(tmp_path, db_url, lora):
    async with serving(tmp_path, db_url, apps=["robotics", "media", "lora"]) as (app, http):
        assert app.state.surfaces == ["robotics", "media", "lora"]
        assert app.state.lora_started  # a surface's startup handlers run with the server
        robotics = {"status": "ok", "app_name": "Hephaes Backend"}
        assert (await http.get("/robotics/health")).json() == robotics
        assert (await http.get("/robotics/assets")).json() == (await http.get("/assets")).json() == []
        assert (await http.get("/media/api/health")).json()["status"] == "healthy"
        assert (await http.get("/media/", headers={"Accept": "application/json"})).json() == {
            "message": "Hyperion API is running"
        }
        # A path both robotics and lora declare: robotics' at the root, lora's under its prefix.
        assert (await http.get("/health")).json() == robotics
        assert (await http.get("/lora/health")).json() == {"status": "healthy", "service": "lora"}
        # A lora path nobody else declares is at the root too; each address knows its prefix.
        root, prefixed = (await http.get("/api/v1/where")).json(), (await http.get("/lora/api/v1/where")).json()
        assert root == {"service": "lora", "root_path": "", "surface": "lora", "self_url": "/api/v1/where"}
        assert prefixed == {
            "service": "lora",
            "root_path": "/lora",
            "surface": "lora",
            "self_url": "/lora/api/v1/where",
        }
        assert (await http.get(prefixed["self_url"])).json() == prefixed
        # Not routed across surfaces: robotics' paths are not under lora's prefix.
        assert (await http.get("/lora/assets")).status_code == 404
        assert (await http.get("/robotics/api/v1/where")).status_code == 404


async def test_exception_handlers_and_middleware_apply_at_both_addresses(tmp_path, db_url, lora):
    async with serving(tmp_path, db_url, apps=["robotics", "lora"]) as (_app, http):
        for path in ("/api/v1/teapot", "/lora/api/v1/teapot"):
            r = await http.get(path)
            assert r.status_code == 418 and r.json() == {"error": "teapot", "service": "lora"}, path
            assert r.headers["x-stamp"] == "lora"
        for path in ("/assets/nope", "/robotics/assets/nope"):  # robotics' own error handler
            r = await http.get(path)
            assert r.status_code == 404 and r.json()["detail"].startswith("asset not found"), r.text
        assert "x-stamp" not in (await http.get("/health")).headers  # robotics' answer: no lora middleware
        r = await http.post("/lora/health")
        assert r.status_code == 405


async def test_websockets_under_the_prefix_and_at_the_root(tmp_path, db_url, lora):
    settings = make_settings(tmp_path / "home", db_url, apps=["robotics", "lora"])
    app = create_app(settings, migrate=False)
    async with (
        LifespanManager(app),
        ASGIWebSocketTransport(app=app) as transport,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        async with aconnect_ws("/lora/ws/progress", http) as ws:
            assert await ws.receive_json() == {"service": "lora", "root_path": "/lora", "surface": "lora"}
        async with aconnect_ws("/ws/progress", http) as ws:
            assert await ws.receive_json() == {"service": "lora", "root_path": "", "surface": "lora"}


async def test_collisions_go_to_the_first_in_kiln_apps_order_and_are_logged(tmp_path, db_url, lora, caplog):
    caplog.set_level(logging.WARNING, logger="kiln.surfaces")
    async with serving(tmp_path, db_url, apps=["lora", "robotics"]) as (app, http):
        assert (await http.get("/health")).json() == {"status": "healthy", "service": "lora"}
        assert (await http.get("/robotics/health")).json()["app_name"] == "Hephaes Backend"
    messages = [r.getMessage() for r in caplog.records if r.name == "kiln.surfaces"]
    assert any("GET /health" in m and "/robotics/health" in m for m in messages), messages
    assert [(c.method, c.path, c.winner, c.loser) for c in app.state.collisions] == [
        ("GET", "/health", "lora", "robotics")
    ]


async def test_openapi_documents_the_root_and_each_prefix(tmp_path, db_url, lora):
    async with serving(tmp_path, db_url, apps=["robotics", "lora"]) as (_app, http):
        whole = (await http.get("/openapi.json")).json()
        assert "/assets" in whole["paths"] and "/api/v1/where" in whole["paths"] and "/healthz" in whole["paths"]
        health = whole["paths"]["/health"]["get"]
        assert health["tags"] == ["robotics"]  # the root's /health is robotics'
        lora_doc = (await http.get("/lora/openapi.json")).json()
        assert lora_doc["servers"] == [{"url": "/lora"}] and "/health" in lora_doc["paths"]
        assert "/assets" not in lora_doc["paths"]
        page = await http.get("/lora/docs")
        assert page.status_code == 200 and "/lora/openapi.json" in page.text and "/docs-assets/" in page.text


async def test_root_page_for_browsers_contract_body_for_json(tmp_path, db_url):
    async with serving(tmp_path, db_url, apps=["robotics", "media"]) as (_app, http):
        page = await http.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for text in ("/robotics", "/media", "/robotics/docs", "/media/docs", "Kiln"):
            assert text in page.text
        assert (await http.get("/")).json() == {"message": "Hyperion API is running"}
        assert (await http.get("/", headers={"Accept": "application/json"})).json() == {
            "message": "Hyperion API is running"
        }
    async with serving(tmp_path, db_url, apps=["robotics"]) as (_app, http):
        listing = (await http.get("/")).json()  # no surface declares `/`: Kiln's own listing
        assert listing["surfaces"] == [{"name": "robotics", "prefix": "/robotics", "docs": "/robotics/docs"}]


async def test_metrics_name_the_prefixed_route(tmp_path, db_url):
    async with serving(tmp_path, db_url, apps=["robotics"]) as (_app, http):
        await http.get("/robotics/assets")
        await http.get("/assets")
        text = (await http.get("/metrics")).text
    assert 'route="/robotics/assets",status="200"' in text and 'route="/assets",status="200"' in text


async def test_robotics_content_urls_carry_the_prefix(tmp_path, db_url):
    from tests.apps.robotics.api_helpers import convert, recording, register, trigger_spec

    async with serving(tmp_path, db_url, apps=["robotics"]) as (_app, http):
        asset = await register(http, recording(tmp_path, "run.bag"))
        await convert(http, {"asset_ids": [asset["id"]], "spec": trigger_spec()})
        # `output_files` of a conversion are path strings (the contract's list[str]); the records
        # with their content URLs are at /outputs.
        (root_item, *_) = (await http.get("/outputs")).json()
        output_id = root_item["id"]
        assert root_item["content_url"] == f"/outputs/{output_id}/content"
        listed = (await http.get("/robotics/outputs")).json()
        assert all(item["content_url"].startswith("/robotics/outputs/") for item in listed) and listed
        one = (await http.get(f"/robotics/outputs/{output_id}")).json()
        assert one["content_url"] == f"/robotics/outputs/{output_id}/content"
        assert (await http.get(one["content_url"])).status_code == 200
        assert (await http.get(f"/outputs/{output_id}")).json()["content_url"] == f"/outputs/{output_id}/content"


async def test_media_image_urls_carry_the_prefix_in_bodies_and_websocket_messages(tmp_path, db_url):
    import asyncio

    from tests.apps.media.mediakit import PASSWORD, photo

    settings = make_settings(tmp_path / "home", db_url, apps=["robotics", "media"])
    app = create_app(settings, migrate=False)
    async with (
        LifespanManager(app, startup_timeout=30),
        ASGIWebSocketTransport(app=app) as transport,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        body = {"email": "ann@example.com", "password": PASSWORD, "full_name": "Ann"}
        assert (await http.post("/media/api/auth/signup", json=body)).status_code == 201
        assert (await http.post("/media/api/auth/login", json=body)).status_code == 200
        token = http.cookies["access_token"]
        async with aconnect_ws("/media/api/upload/ws/updates", http, params={"token": token}) as ws:
            await asyncio.sleep(0.1)
            files = [("files", ("a.jpg", photo(gps=(47.5, 19.04, 100.0)), "image/jpeg"))]
            (media_id,) = (await http.post("/media/api/upload/files", files=files)).json()["media_ids"]
            seen = []
            while not seen or seen[-1]["status"] not in ("READY", "FAILED"):
                seen.append(await asyncio.wait_for(ws.receive_json(), 20))
        uploaded = next(m for m in seen if m["status"] == "UPLOADED")
        assert uploaded["img_url"] == f"/media/api/media/{media_id}/image"
        item = (await http.get("/media/api/vault")).json()["items"][0]
        assert item["image_url"] == f"/media/api/media/{media_id}/image"
        assert item["thumbnail_url"] == f"/media/api/media/{media_id}/thumbnail"
        assert (await http.get(item["image_url"])).status_code == 200
        point = (await http.get("/media/api/map")).json()["items"][0]
        assert point["image_url"] == item["image_url"] and point["thumbnail_url"] == item["thumbnail_url"]
        recent = (await http.get("/media/api/upload/recents")).json()["items"][0]
        assert recent["image_url"] == item["image_url"]
        root_item = (await http.get("/api/vault")).json()["items"][0]
        assert root_item["image_url"] == f"/api/media/{media_id}/image"
        # Replayed messages carry the prefix too.
        async with aconnect_ws("/media/api/upload/ws/updates", http, params={"token": token, "since": "0"}) as ws:
            replayed = [await asyncio.wait_for(ws.receive_json(), 20) for _ in range(2)]
        assert replayed[1]["img_url"] == f"/media/api/media/{media_id}/image"
