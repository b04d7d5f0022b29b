"""What the reference's Vue SPA asks of the API, as found by driving it against Kiln."""

from __future__ import annotations


async def test_frontend_settings_under_the_api_base(client) -> None:
    # The SPA builds the settings URL from its backend base: GET /api/v1/frontend/settings.
    for path in ("/frontend/settings", "/v1/frontend/settings", "/api/v1/frontend/settings"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.json() == {"backendUrl": "/api/v1", "backendApiKey": None}
