"""What the reference's Vue SPA asks of the API, as found by driving it against Kiln."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import httpx
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport

from tests.apps.lora.kit import configure, create, write_lora


async def _next(ws, timeout: float = 20) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_text(), timeout))


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


async def test_spa_progress_socket(app, lora_dir, fake_sdnext) -> None:
    # The SPA opens <base>/generation/ws/progress, never subscribes, and reads flat messages.
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    fake_sdnext.step_seconds = 0.05
    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://testserver") as http,
        aconnect_ws("/api/v1/generation/ws/progress", http) as ws,
    ):
        assert (await _next(ws))["type"] == "connected"
        body = {
            "prompt": "a lighthouse",
            "negative_prompt": "fog",
            "steps": 8,
            "width": 64,
            "height": 64,
            "seed": 42,
            "cfg_scale": 6,
        }
        job_id = (await http.post("/api/v1/generation/queue-generation", json=body)).json()["delivery_id"]
        seen: list[dict] = []
        while not seen or seen[-1]["type"] not in ("generation_complete", "generation_error"):
            message = await _next(ws)
            if message.get("job_id") == job_id:
                seen.append(message)
        progress = [m for m in seen if m["type"] == "generation_progress"]
        assert progress and all(0 <= m["progress"] <= 1 and "data" not in m for m in progress)
        done = seen[-1]
        assert done["type"] == "generation_complete" and done["status"] == "completed"
        assert done["image_url"] == f"/api/v1/generation/results/{job_id}/images/0"
        assert (done["result_id"], done["prompt"], done["width"], done["seed"]) == (job_id, "a lighthouse", 64, 42)
        assert (await http.get(done["image_url"])).status_code == 200

        fake_sdnext.step_seconds = 0.2
        job_id = (await http.post("/api/v1/generation/queue-generation", json={**body, "steps": 50})).json()[
            "delivery_id"
        ]
        while (await _next(ws)).get("type") != "generation_progress":
            pass
        await http.post(f"/api/v1/generation/jobs/{job_id}/cancel")
        message = await _next(ws)
        while message.get("job_id") != job_id or message["type"] == "generation_progress":
            message = await _next(ws)
        assert message == {
            "type": "generation_error",
            "job_id": job_id,
            "error": "Generation cancelled",
            "status": "cancelled",
        }


async def test_activate_deactivate_patch_answer_a_bare_adapter_too(client, app, lora_dir) -> None:
    # The SPA parses these answers as an AdapterRead (id, name, active, weight at the top level).
    configure(app, lora_dir)
    write_lora(lora_dir / "ink.safetensors")
    adapter = await create(client, lora_dir / "ink.safetensors", "ink")
    for method, path, body, check in (
        ("POST", f"/api/v1/adapters/{adapter['id']}/activate", None, ("active", True)),
        ("PATCH", f"/api/v1/adapters/{adapter['id']}", {"weight": 0.6}, ("weight", 0.6)),
        ("POST", f"/api/v1/adapters/{adapter['id']}/deactivate", None, ("active", False)),
    ):
        answer = (await client.request(method, path, json=body)).json()
        assert answer["id"] == adapter["id"] and answer["name"] == "ink" and answer[check[0]] == check[1]
        assert answer["adapter"][check[0]] == check[1]


async def _generate(client, prompt: str) -> str:
    answer = await client.post(
        "/api/v1/generation/generate", json={"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 7}
    )
    assert answer.json()["status"] == "completed", answer.text
    return answer.json()["job_id"]


async def test_history_rating_favourite_bulk_export(client, app, lora_dir, fake_sdnext) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    first, second, third = [await _generate(client, p) for p in ("red fox", "blue whale", "red kite")]
    base = "/api/v1/generation/results"
    rated = await client.put(f"{base}/{first}/rating", json={"rating": 4})
    assert rated.status_code == 200 and rated.json()["rating"] == 4 and rated.json()["rating_updated_at"]
    for bad in ({"rating": 6}, {"rating": True}, {"rating": "4"}, {}):
        assert (await client.put(f"{base}/{first}/rating", json=bad)).status_code == 422
    assert (await client.put(f"{base}/nope/rating", json={"rating": 1})).json()["status"] == 404
    fav = await client.put(f"{base}/{second}/favorite", json={"is_favorite": True})
    assert fav.json()["is_favorite"] is True
    bulk = await client.put(f"{base}/bulk-favorite", json={"ids": [first, third, "nope"], "is_favorite": True})
    assert bulk.json()["updated"] == 2
    page = (await client.get(base, params={"page": 1, "page_size": 50})).json()
    listed = {r["id"]: r for r in page["results"]}
    assert all(listed[i]["is_favorite"] for i in (first, second, third)) and listed[first]["rating"] == 4
    image_bytes = sum([len((await client.get(f"{base}/{i}/images/0")).content) for i in (first, second, third)])
    # What the history screen's summary reads (`stats`), over every result, not just this page.
    assert page["stats"] == {"total_results": 3, "avg_rating": 4, "total_favorites": 3, "total_size": image_bytes}
    assert (page["page"], page["page_size"], page["total"], page["pages"], page["has_more"]) == (1, 50, 3, 1, False)
    assert [r["id"] for r in (await client.get(base, params={"min_rating": 3})).json()] == [first]
    assert {r["id"] for r in (await client.get(base, params={"search": "red"})).json()} == {first, third}
    second_page = (await client.get(base, params={"page": 2, "page_size": 1})).json()
    assert [r["id"] for r in second_page["results"]] == [second] and second_page["has_more"] is True
    assert second_page["stats"]["total_results"] == 3
    await client.put(f"{base}/{third}/rating", json={"rating": 1})
    searched = (await client.get(base, params={"page": 1, "page_size": 1, "search": "red"})).json()
    assert searched["stats"]["total_results"] == 2 and searched["stats"]["avg_rating"] == 2.5
    assert searched["pages"] == 2 and len(searched["results"]) == 1

    exported = await client.post(f"{base}/export", json={"ids": [first, second], "include_metadata": True})
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        names = set(archive.namelist())
        assert {f"{first}/0.png", f"{second}/0.png", f"{first}/metadata.json"} <= names
        assert json.loads(archive.read(f"{first}/metadata.json"))["rating"] == 4
    assert (await client.post(f"{base}/export", json={"ids": ["nope"]})).status_code == 404

    deleted = await client.request("DELETE", f"{base}/bulk-delete", json={"ids": [first, second, "nope"]})
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 2}
    assert [r["id"] for r in (await client.get(base)).json()] == [third]
    assert (await client.get(f"{base}/{first}/images/0")).status_code == 404
    assert (await client.request("DELETE", f"{base}/bulk-delete", json={"ids": "x"})).status_code == 422


async def test_similar_answer_readable_through_data(client, app, lora_dir) -> None:
    # The SPA's recommendations screen parses `body.data` of the similar answer.
    configure(app, lora_dir)
    for name in ("ink", "brush"):
        write_lora(lora_dir / f"{name}.safetensors", output_name=name)
    ink = await create(client, lora_dir / "ink.safetensors", "ink", tags=["ink", "painting"])
    await create(client, lora_dir / "brush.safetensors", "brush", tags=["ink", "brush"])
    answer = (await client.get(f"/api/v1/recommendations/similar/{ink['id']}", params={"limit": 5})).json()
    assert answer["target_lora_id"] == ink["id"] and answer["recommendations"]
    assert {k: v for k, v in answer.items() if k != "data"} == answer["data"]
