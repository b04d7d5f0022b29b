"""Every route answers under both prefixes, and every refusal is the `{"type","title","status"}` envelope."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from tests.apps.lora.kit import configure

OK_GETS = [
    "/adapters",
    "/adapters/tags",
    "/generation/backends",
    "/generation/jobs/active",
    "/generation/results",
    "/recommendations/stats",
    "/analytics/summary",
    "/analytics/stats",
    "/analytics/errors",
    "/analytics/timeseries",
    "/analytics/insights",
    "/dashboard/stats",
    "/dashboard/featured-loras",
    "/dashboard/activity-feed",
    "/backups/history",
    "/system/status",
]
NOT_FOUND = [
    ("GET", "/adapters/nope"),
    ("PATCH", "/adapters/nope"),
    ("DELETE", "/adapters/nope"),
    ("POST", "/adapters/nope/activate"),
    ("POST", "/adapters/nope/deactivate"),
    ("GET", "/deliveries/nope"),
    ("GET", "/generation/jobs/nope"),
    ("POST", "/generation/jobs/nope/cancel"),
    ("GET", "/generation/progress/nope"),
    ("GET", "/generation/results/nope/images/0"),
    ("GET", "/generation/results/nope/thumbnails/0"),
    ("GET", "/generation/results/nope/download"),
    ("DELETE", "/generation/results/nope"),
    ("GET", "/recommendations/similar/nope"),
    ("GET", "/recommendations/embeddings/nope"),
    ("DELETE", "/backups/nope"),
    ("POST", "/backups/nope/restore"),
    ("GET", "/adapters/scan/nope"),
]
INVALID = [
    ("POST", "/adapters/bulk", {"action": 1}),
    ("POST", "/compose", {"prefix": ["x"]}),
    ("POST", "/deliveries", {"mode": "cli"}),
    ("POST", "/generation/generate", {"steps": 5}),
    ("POST", "/generation/queue-generation", {}),
    ("POST", "/generation/compose-and-generate", {}),
    ("POST", "/recommendations/for-prompt", {"prompt": ""}),
    ("POST", "/recommendations/feedback", {}),
    ("POST", "/recommendations/embeddings/compute", {"batch_size": 0}),
    ("POST", "/export", {"loras": "x"}),
    ("POST", "/export/estimate", {"lora_ids": 5}),
    ("POST", "/adapters/scan", {"recursive": "maybe"}),
]


def _envelope(response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.text)
    body = response.json()
    assert set(body) == {"type", "title", "status"} and body["status"] == status and body["title"]


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_every_route_both_prefixes(client, app, lora_dir: Path, prefix: str) -> None:
    configure(app, lora_dir)
    for path in OK_GETS:
        response = await client.get(prefix + path)
        assert response.status_code == 200, (path, response.text)
    for method, path in NOT_FOUND:
        _envelope(await client.request(method, prefix + path, json={"weight": 1}), 404)
    for method, path, body in INVALID:
        _envelope(await client.request(method, prefix + path, json=body), 422)
    assert (await client.post(prefix + "/export/estimate", json={})).json()["bytes"] == 0
    assert (await client.post(prefix + "/backup/create", json={})).json()["success"] is True


async def test_api_key_everywhere(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir, api_key="k-123")
    for path in OK_GETS:
        _envelope(await client.get("/v1" + path), 403)
        assert (await client.get("/api/v1" + path, headers={"X-API-Key": "k-123"})).status_code == 200
    settings = await client.get("/frontend/settings")
    assert settings.status_code == 200 and "k-123" not in settings.text
    async with httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://testserver") as http:
        with pytest.raises(WebSocketDisconnect):
            async with aconnect_ws("/v1/ws/progress", http) as ws:
                await ws.receive_text()
        async with aconnect_ws("/v1/ws/progress", http, params={"api_key": "k-123"}) as ws:
            assert json.loads(await ws.receive_text())["type"] == "connected"


async def test_api_key_accepts_kiln_tokens(client, app, lora_dir: Path) -> None:
    from kiln.core.auth import create_api_token, create_user

    configure(app, lora_dir, api_key="k-123")
    async with app.state.kernel.db.session() as session:
        user = await create_user(session, "lora@example.com", "s3cure-enough-9")
        _, token = await create_api_token(session, user, "lora script")
        await session.commit()
    assert (await client.get("/v1/adapters", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert (await client.get("/v1/adapters", headers={"X-API-Key": token})).status_code == 200
    _envelope(await client.get("/v1/adapters", headers={"Authorization": "Bearer kiln_wrong"}), 403)
