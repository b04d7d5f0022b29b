"""What the reference's Vue SPA asks of the API, as found by driving it against Kiln."""

from __future__ import annotations


async def test_frontend_settings_under_the_api_base(client) -> None:
    # The SPA builds the settings URL from its backend base: GET /api/v1/frontend/settings.
    for path in ("/frontend/settings", "/v1/frontend/settings", "/api/v1/frontend/settings"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.json() == {"backendUrl": "/api/v1", "backendApiKey": None}


async def test_doubled_api_prefix_of_the_spa_screens(client) -> None:
    # Import/export, backups and analytics join '/api/v1/...' onto their '/api/v1' base.
    doubled = "/api/v1/api/v1"
    assert (await client.post(doubled + "/export/estimate", json={"loras": True})).status_code == 200
    assert (await client.get(doubled + "/backups/history")).status_code == 200
    summary = await client.get(doubled + "/analytics/summary", params={"time_range": "24h"})
    assert summary.status_code == 200 and "kpis" in summary.json()
    missing = await client.get(doubled + "/backups/nope/x")
    assert missing.status_code == 404
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not any(p.startswith(doubled) for p in paths)
