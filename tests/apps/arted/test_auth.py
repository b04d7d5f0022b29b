"""Who a run belongs to and who may call: the token's user, tokens required off loopback."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.apps.arted.conftest import EXEC, envelope


async def test_token_user_is_recorded(arted: httpx.AsyncClient, app) -> None:
    from kiln.core.auth.service import create_api_token, create_user

    async with app.state.kernel.db.session() as s:
        user = await create_user(s, "artist@example.org", "pw-123456789", role="user")
        token = await create_api_token(s, user, "arted")
        await s.commit()
    secret = token[1] if isinstance(token, tuple) else token
    r = await arted.post(
        EXEC,
        json={"schema": "dada", "input_text": "Ein Baum", "user_id": "spoof"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 200, r.text
    record = (await arted.get(f"/api/runs/{r.json()['run_id']}")).json()
    assert record["user_id"] == "artist@example.org"
    envelope(
        await arted.post(
            EXEC, json={"schema": "dada", "input_text": "x"}, headers={"Authorization": "Bearer nonsense"}
        ),
        401,
    )


async def test_token_required_off_loopback(tmp_path: Path, db_url: str) -> None:
    from asgi_lifespan import LifespanManager

    from kiln.app import create_app
    from kiln.core.auth.service import create_api_token, create_user
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path / "home", db_url, host="0.0.0.0", apps=["arted"]), migrate=False)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http,
    ):
        body = envelope(await http.get("/api/schema/list"), 401)
        assert body["status"] == "unauthorized"
        async with app.state.kernel.db.session() as s:
            user = await create_user(s, "teacher@example.org", "pw-123456789")
            _, token = await create_api_token(s, user, "arted")
            await s.commit()
        ok = await http.get("/api/schema/list", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["schemas"]
