"""Surfaces whose contract has no auth: open on loopback, token required anywhere else."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from kiln.app import create_app
from kiln.core.auth import create_api_token, create_user, issue_access_token
from tests.conftest import make_settings


async def _client_for(tmp_path: Path, db_url: str, host: str):
    settings = make_settings(tmp_path / "home", db_url, host=host, apps=["robotics"])
    app = create_app(settings, migrate=False)
    manager = LifespanManager(app)
    await manager.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    return app, manager, http


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
async def test_open_on_loopback(tmp_path: Path, db_url: str, host: str):
    app, manager, http = await _client_for(tmp_path, db_url, host)
    try:
        assert (await http.get("/assets")).status_code == 200
    finally:
        await http.aclose()
        await manager.__aexit__(None, None, None)


async def test_token_required_off_loopback(tmp_path: Path, db_url: str):
    app, manager, http = await _client_for(tmp_path, db_url, "0.0.0.0")
    try:
        denied = await http.get("/assets")
        assert denied.status_code == 401 and "detail" in denied.json()
        assert (await http.get("/assets", headers={"Authorization": "Bearer not-a-token"})).status_code == 401

        kernel = app.state.kernel
        async with kernel.db.session() as session:
            user = await create_user(session, "robot@example.com", "s3cure-enough-9")
            _, api_token = await create_api_token(session, user, "ci script")
            await session.commit()
        jwt = issue_access_token(kernel.settings.resolved_secret_key, user.id, user.role, 30).token
        for token in (jwt, api_token):
            allowed = await http.get("/assets", headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200, allowed.text
        # Core routes stay reachable for probes.
        assert (await http.get("/healthz")).status_code == 200
    finally:
        await http.aclose()
        await manager.__aexit__(None, None, None)
