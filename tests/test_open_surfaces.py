"""Exposure: surfaces whose contract has no auth are open on loopback; anywhere else they take only an
API token scoped to them or an admin login. Signup, Host header, docs and metrics follow the
listen address too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from kiln.app import create_app
from kiln.core.auth import create_api_token, create_user, issue_access_token
from kiln.settings import Settings
from tests.conftest import make_settings
from tests.core.fake_surface import as_surface

PASSWORD = "s3cure-enough-9"


@asynccontextmanager
async def serving(
    tmp_path: Path, db_url: str, host: str, base_url: str = "http://testserver", **overrides: object
) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    overrides.setdefault("apps", ["robotics"])
    app = create_app(make_settings(tmp_path / "home", db_url, host=host, **overrides), migrate=False)
    async with (
        LifespanManager(app, startup_timeout=30),
        ASGIWebSocketTransport(app=app) as transport,
        httpx.AsyncClient(transport=transport, base_url=base_url) as http,
    ):
        yield app, http


async def _user(app, email: str, role: str = "user", scopes: list[str] | None = None) -> tuple[str, str]:
    """(login JWT, API token) of a new user."""
    kernel = app.state.kernel
    async with kernel.db.session() as session:
        user = await create_user(session, email, PASSWORD, role=role)
        _, api_token = await create_api_token(session, user, "script", scopes=scopes)
        await session.commit()
    return issue_access_token(kernel.settings.resolved_secret_key, user.id, user.role, 30).token, api_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
async def test_open_on_loopback(tmp_path: Path, db_url: str, host: str):
    async with serving(tmp_path, db_url, host) as (_app, http):
        assert (await http.get("/assets")).status_code == 200
        assert (await http.get("/robotics/assets")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/openapi.json")).status_code == 200


async def test_off_loopback_only_scoped_tokens_and_admins(tmp_path: Path, db_url: str):
    async with serving(tmp_path, db_url, "0.0.0.0", apps=["robotics", "media"]) as (app, http):
        for path in ("/assets", "/robotics/assets"):
            denied = await http.get(path)
            assert denied.status_code == 401 and "detail" in denied.json()
            assert (await http.get(path, headers=bearer("not-a-token"))).status_code == 401

        user_jwt, user_api = await _user(app, "plain@example.com")
        admin_jwt, _ = await _user(app, "boss@example.com", role="admin")
        root_jwt, _ = await _user(app, "root@example.com", role="superadmin")
        _, robotics_api = await _user(app, "robot@example.com", scopes=["robotics"])
        _, lora_api = await _user(app, "lora@example.com", scopes=["lora", "media"])
        for path in ("/assets", "/robotics/assets"):
            refused = await http.get(path, headers=bearer(user_jwt))
            assert refused.status_code == 403, refused.text
            detail = refused.json()["detail"]
            assert "robotics" in detail and "--scope robotics" in detail and "admin" in detail, detail
            for token in (admin_jwt, root_jwt, user_api, robotics_api):  # user_api: every surface by default
                allowed = await http.get(path, headers=bearer(token))
                assert allowed.status_code == 200, (path, allowed.text)
            wrong = await http.get(path, headers=bearer(lora_api))
            assert wrong.status_code == 403 and "limited to lora, media" in wrong.json()["detail"]
        # Scopes hold on surfaces with their own auth too; a login is unaffected by them.
        assert (await http.get("/api/auth/me", headers=bearer(robotics_api))).status_code == 403
        assert (await http.get("/media/api/auth/me", headers=bearer(lora_api))).status_code == 200
        assert (await http.get("/api/auth/me", headers=bearer(user_jwt))).status_code == 200
        for path in ("/api/upload/ws/updates", "/media/api/upload/ws/updates"):  # media's socket too
            async with aconnect_ws(path, http, params={"token": robotics_api}) as ws:
                with pytest.raises(WebSocketDisconnect) as closed:
                    await ws.receive_json()
            assert closed.value.code == 1008 and "limited to robotics" in closed.value.reason
        # Engine probes stay reachable; docs and metrics need a token (any).
        assert (await http.get("/healthz")).status_code == 200
        for path in ("/metrics", "/docs", "/openapi.json", "/robotics/openapi.json", "/media/docs"):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers=bearer(lora_api))).status_code == 200, path


async def test_scopes_follow_the_surface_at_the_root_and_on_sockets(tmp_path, db_url, monkeypatch):
    as_surface(monkeypatch, "lora")
    async with serving(tmp_path, db_url, "10.0.0.5", apps=["robotics", "lora"]) as (app, http):
        user_jwt, _ = await _user(app, "plain@example.com")
        admin_jwt, _ = await _user(app, "boss@example.com", role="admin")
        _, robotics_api = await _user(app, "robot@example.com", scopes=["robotics"])
        _, lora_api = await _user(app, "lora@example.com", scopes=["lora"])
        for path in ("/api/v1/where", "/lora/api/v1/where"):  # the surface is known at either address
            assert (await http.get(path, headers=bearer(lora_api))).status_code == 200
            assert (await http.get(path, headers=bearer(robotics_api))).status_code == 403
        assert (await http.get("/health", headers=bearer(lora_api))).status_code == 403  # robotics' /health
        assert (await http.get("/lora/health", headers=bearer(lora_api))).status_code == 200

        for path in ("/ws/progress", "/lora/ws/progress"):
            for token in (user_jwt, robotics_api):
                with pytest.raises(WebSocketDisconnect) as closed:
                    async with aconnect_ws(path, http, params={"token": token}) as ws:
                        await ws.receive_json()
                assert closed.value.code == 1008
            for token in (admin_jwt, lora_api):
                async with aconnect_ws(path, http, params={"token": token}) as ws:
                    assert (await ws.receive_json())["surface"] == "lora"


async def test_public_docs_and_metrics_settings(tmp_path: Path, db_url: str):
    async with serving(tmp_path, db_url, "0.0.0.0", public_docs=True, public_metrics=True) as (_app, http):
        for path in ("/metrics", "/docs", "/openapi.json", "/robotics/docs", "/robotics/openapi.json"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/assets")).status_code == 401
    async with serving(tmp_path, db_url, "0.0.0.0", public_docs=True) as (_app, http):
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("host", "signup", "status"),
    [
        ("127.0.0.1", None, 201),
        ("0.0.0.0", None, 403),
        ("0.0.0.0", "open", 201),
        ("127.0.0.1", "closed", 403),
    ],
)
async def test_signup_follows_kiln_signup(tmp_path: Path, db_url: str, host: str, signup: str | None, status: int):
    overrides = {"signup": signup} if signup else {}
    async with serving(tmp_path, db_url, host, apps=["media"], **overrides) as (_app, http):
        body = {"email": "new@example.com", "password": "Correct-horse-9", "full_name": "New"}
        for path in ("/api/auth/signup", "/media/api/auth/signup"):
            r = await http.post(path, json=body | {"email": f"{path.count('/')}@example.com"})
            assert r.status_code == status, r.text
            if status == 403:
                assert "kiln user create" in r.json()["detail"]


def test_signup_default_follows_the_listen_address(tmp_path: Path):
    assert Settings(_env_file=None, home=tmp_path, host="127.0.0.1").signup_open
    assert not Settings(_env_file=None, home=tmp_path, host="0.0.0.0").signup_open
    assert Settings(_env_file=None, home=tmp_path, host="0.0.0.0", signup="open").signup_open


@pytest.mark.parametrize(
    ("host", "allowed", "header", "ok"),
    [
        ("127.0.0.1", [], "localhost:8000", True),
        ("127.0.0.1", [], "127.0.0.1:8000", True),
        ("127.0.0.1", [], "[::1]:8000", True),
        ("127.0.0.1", [], "app.localhost", True),
        ("127.0.0.1", [], "rebind.attacker.example", False),
        ("127.0.0.1", [], "127.0.0.1.attacker.example", False),
        ("127.0.0.1", ["kiln.lan"], "kiln.lan:8000", True),
        ("127.0.0.1", ["*.lan"], "box.lan", True),
        ("127.0.0.1", ["*.lan"], "lan.attacker.example", False),
        ("0.0.0.0", [], "anything.example", True),
        ("0.0.0.0", ["kiln.example.com"], "other.example", False),
        ("0.0.0.0", ["kiln.example.com"], "kiln.example.com", True),
    ],
)
async def test_host_header(tmp_path: Path, db_url: str, host: str, allowed: list[str], header: str, ok: bool):
    async with serving(tmp_path, db_url, host, allowed_hosts=allowed) as (_app, http):
        r = await http.get("/healthz", headers={"Host": header})
        assert r.status_code == (200 if ok else 400), r.text
        if not ok:
            assert "KILN_ALLOWED_HOSTS" in r.json()["detail"]
            with pytest.raises(WebSocketDisconnect) as closed:
                async with aconnect_ws("/ws/anything", http, headers={"Host": header}) as ws:
                    await ws.receive_text()
            assert closed.value.code == 1008
