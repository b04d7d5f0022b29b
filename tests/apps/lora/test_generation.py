"""Generation as engine jobs against a fake SDNext speaking its real format."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from PIL import Image

from tests.apps.lora.kit import configure, create, write_lora
from tests.fakes.sdnext import FakeSDNext

SMALL = {"prompt": "a cat", "steps": 4, "width": 64, "height": 64, "seed": 42}


async def _wait_status(client, job_id: str, statuses: tuple[str, ...], prefix: str = "/v1") -> dict:
    for _ in range(400):
        got = (await client.get(f"{prefix}/generation/jobs/{job_id}")).json()["delivery"]
        if got["status"] in statuses:
            return got
        await asyncio.sleep(0.025)
    raise AssertionError(f"job {job_id} never reached {statuses}: {got}")


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_generate_immediate_and_results(
    client, app, lora_dir: Path, fake_sdnext: FakeSDNext, prefix: str
) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    assert (await client.get(f"{prefix}/generation/backends")).json() == {"sdnext": True}
    res = (await client.post(f"{prefix}/generation/generate", json={**SMALL, "batch_size": 2})).json()
    assert res["status"] == "completed", res
    assert res["generation_info"]["seed"] == 42 and res["progress"] == 1.0
    assert res["images"] == [f"{prefix}/generation/results/{res['job_id']}/images/{i}" for i in range(2)]
    image = await client.get(res["images"][1])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).size == (64, 64)
    thumb = await client.get(f"{prefix}/generation/results/{res['job_id']}/thumbnails/0")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert (await client.get(f"{prefix}/generation/results/{res['job_id']}/images/5")).status_code == 404
    sent = [body for method, path, body in fake_sdnext.requests if path == "/sdapi/v1/txt2img"][0]
    assert sent["force_task_id"] == f"task(kiln-{res['job_id']})" and sent["negative_prompt"] == ""
    results = (await client.get(f"{prefix}/generation/results")).json()
    assert results[0]["job_id"] == res["job_id"] and results[0]["image_url"].startswith(prefix + "/generation/")
    assert results[0]["width"] == 64 and results[0]["seed"] == 42
    deferred = (await client.post(f"{prefix}/generation/generate", params={"mode": "deferred"}, json=SMALL)).json()
    assert deferred["status"] in ("queued", "processing", "completed")
    done = await _wait_status(client, deferred["job_id"], ("completed",), prefix)
    assert done["result"]["images"][0].startswith(prefix)
    progress = (await client.get(f"{prefix}/generation/progress/{deferred['job_id']}")).json()
    assert progress["status"] == "completed" and progress["progress"] == 1.0
    download = await client.get(f"{prefix}/generation/results/{deferred['job_id']}/download")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert (await client.delete(f"{prefix}/generation/results/{deferred['job_id']}")).status_code == 204
    assert (await client.get(f"{prefix}/generation/results/{deferred['job_id']}/images/0")).status_code == 404
    assert len((await client.get(f"{prefix}/generation/results")).json()) == 1
    settings = (await client.get("/frontend/settings")).json()
    assert settings == {"backendUrl": "/api/v1", "backendApiKey": None}


async def test_failure_message_and_unconfigured(client, app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    configure(app, lora_dir)
    assert (await client.get("/v1/generation/backends")).json() == {"sdnext": False}
    res = (await client.post("/v1/generation/generate", json=SMALL)).json()
    assert res["status"] == "failed" and "not configured" in res["error_message"] and res["images"] is None
    queued = await client.post("/v1/generation/queue-generation", json=SMALL)
    assert queued.status_code == 400 and "not configured" in queued.json()["title"]
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    fake_sdnext.fail_next("CUDA out of memory. Tried to allocate 2.00 GiB")
    failed = (await client.post("/v1/generation/generate", json=SMALL)).json()
    assert failed["status"] == "failed" and failed["error_message"].startswith("CUDA out of memory")
    job = (await client.get(f"/v1/generation/jobs/{failed['job_id']}")).json()["delivery"]
    assert job["status"] == "failed" and "CUDA" in job["result"]["error"]
    bad = await client.post("/v1/generation/generate", json={**SMALL, "cfg_scale": "NaN"})
    assert bad.status_code == 422 and set(bad.json()) == {"type", "title", "status"}
    assert (await client.post("/v1/generation/generate", json={**SMALL, "steps": 10**6})).status_code == 422
    unknown = (await client.post("/v1/generation/generate", params={"backend": "comfy"}, json=SMALL)).json()
    assert unknown["status"] == "failed" and unknown["job_id"] == "unknown"
    assert (await client.get("/v1/generation/jobs/nope")).status_code == 404
    assert (await client.post("/v1/generation/jobs/nope/cancel")).status_code == 404


async def test_cancel_running_interrupts(client, app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    fake_sdnext.step_seconds = 0.1
    long = {**SMALL, "steps": 100}
    job_id = (await client.post("/v1/generation/queue-generation", json=long)).json()["delivery_id"]
    waiting = (await client.post("/v1/generation/queue-generation", json=long)).json()["delivery_id"]
    for _ in range(200):
        active = (await client.get("/v1/generation/jobs/active")).json()
        mine = next((j for j in active if j["id"] == job_id), None)
        if mine and mine["progress"] > 0:
            break
        await asyncio.sleep(0.05)
    assert mine and mine["status"] == "processing" and 0 < mine["progress"] < 100
    assert mine["message"].startswith("step")
    assert {j["id"] for j in active} >= {job_id, waiting}
    assert (await client.post(f"/v1/generation/jobs/{waiting}/cancel")).status_code == 200
    assert (await _wait_status(client, waiting, ("cancelled", "completed", "failed")))["status"] == "cancelled"
    cancelled = (await client.post(f"/v1/generation/jobs/{job_id}/cancel")).json()
    assert cancelled == {"success": True, "status": "cancelled", "message": "Generation job cancelled"}
    final = await _wait_status(client, job_id, ("cancelled", "completed", "failed"))
    assert final["status"] == "cancelled" and fake_sdnext.interrupts == 1
    await asyncio.sleep(0.5)  # the late partial result never overwrites the cancel
    assert (await client.get(f"/v1/generation/jobs/{job_id}")).json()["delivery"]["status"] == "cancelled"
    again = await client.post(f"/v1/generation/jobs/{job_id}/cancel")
    assert again.status_code == 400 and again.json()["title"] == "Job cannot be cancelled in its current state"
    assert (await client.get("/v1/generation/results")).json() == []
    txt2img = [p for _, p, _ in fake_sdnext.requests if p == "/sdapi/v1/txt2img"]
    assert len(txt2img) == 1  # the waiting job never reached SDNext


async def test_compose_and_generate(client, app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    body = {"compose_request": {"prefix": "a cat"}, "generation_params": SMALL}
    none = await client.post("/v1/generation/compose-and-generate", json=body)
    assert none.status_code == 400 and none.json()["title"] == "No active adapters found"
    a = await create(client, write_lora(lora_dir / "ink.safetensors"), "Ink", trained_words=["inkwash"])
    await client.post(f"/v1/adapters/{a['id']}/activate")
    res = (await client.post("/v1/generation/compose-and-generate", json=body)).json()
    assert res["status"] == "completed"
    sent = [b for _, p, b in fake_sdnext.requests if p == "/sdapi/v1/txt2img"][-1]
    assert sent["prompt"] == "a cat <lora:ink:1>, inkwash"
    composed = (
        await client.post(
            "/v1/compose",
            json={"prefix": "dog", "delivery": {"mode": "sdnext", "sdnext": {"generation_params": SMALL}}},
        )
    ).json()
    done = await _wait_status(client, composed["delivery"]["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["prompt"] == "dog <lora:ink:1>, inkwash"
    delivered = (
        await client.post(
            "/v1/deliveries", json={"prompt": "p", "mode": "sdnext", "params": {"generation_params": SMALL}}
        )
    ).json()
    assert (await _wait_status(client, delivered["delivery_id"], ("completed", "failed")))["status"] == "completed"


async def _next(ws, timeout: float = 20) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_text(), timeout))


async def test_progress_websocket(app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    fake_sdnext.step_seconds = 0.05
    async with httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://testserver") as http:
        async with aconnect_ws("/api/v1/ws/progress", http) as ws:
            assert (await _next(ws))["type"] == "connected"
            await ws.send_text("not json")
            await ws.send_text("[1,2]")
            await ws.send_text(json.dumps({"type": "ping"}))
            assert (await _next(ws))["type"] == "pong"
            await ws.send_text(json.dumps({"type": "subscribe", "job_ids": None}))
            assert (await _next(ws))["type"] == "subscription_confirmed"
            started = await http.post("/api/v1/generation/queue-generation", json={**SMALL, "steps": 10})
            job_id = started.json()["delivery_id"]
            seen: list[dict] = []
            while not seen or seen[-1]["type"] != "generation_complete":
                message = await _next(ws)
                if message["data"].get("job_id") == job_id:
                    seen.append(message)
            kinds = [m["type"] for m in seen]
            assert kinds[0] == "generation_started" and "progress_update" in kinds
            steps = [m["data"] for m in seen if m["type"] == "progress_update" and m["data"]["current_step"]]
            assert steps and steps[0]["total_steps"] == 10 and all(0 <= s["progress"] < 1 for s in steps)
            complete = seen[-1]["data"]
            assert complete["status"] == "completed" and complete["images"][0].startswith("/api/v1/generation/")
            assert complete["generation_info"]["seed"] == 42
        async with aconnect_ws("/v1/ws/progress", http) as ws:
            await _next(ws)
            await ws.send_text(json.dumps({"type": "subscribe", "job_ids": [job_id]}))
            assert (await _next(ws))["data"] == {"job_ids": [job_id]}
            snapshot = await _next(ws)
            assert snapshot["type"] == "generation_complete" and snapshot["data"]["job_id"] == job_id


async def test_http_delivery_to_allowed_host(client, app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    port = int(fake_sdnext.url.rsplit(":", 1)[1])
    configure(app, lora_dir, delivery_hosts=["127.0.0.1"])
    ok = (
        await client.post(
            "/v1/deliveries",
            json={
                "prompt": "p",
                "mode": "http",
                "params": {"host": "127.0.0.1", "port": port, "path": "/sdapi/v1/refresh-loras"},
            },
        )
    ).json()
    for _ in range(200):
        got = (await client.get(f"/v1/deliveries/{ok['delivery_id']}")).json()["delivery"]
        if got["status"] in ("succeeded", "failed"):
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "succeeded" and got["result"]["status"] == 200
    assert ("POST", "/sdapi/v1/refresh-loras", {"prompt": "p"}) in fake_sdnext.requests


async def test_generation_query_options(client, app, lora_dir: Path, fake_sdnext: FakeSDNext) -> None:
    """The three generation routes take the contract's query parameters, checked the same way."""
    configure(app, lora_dir, sdnext_url=fake_sdnext.url)
    unknown = (await client.post("/v1/generation/generate", params={"backend": "comfy"}, json=SMALL)).json()
    assert unknown["status"] == "failed" and "Unknown generation backend 'comfy'" in unknown["error_message"]
    for path in ("/v1/generation/generate", "/v1/generation/queue-generation"):
        bad = await client.post(path, params={"mode": "later"}, json=SMALL)
        assert bad.status_code == 422 and set(bad.json()) == {"type", "title", "status"}, path
        long = await client.post(path, params={"backend": "x" * 51}, json=SMALL)
        assert long.status_code == 422, path
    spec = (await client.get("/openapi.json")).json()["paths"]
    for path, mode in (
        ("/v1/generation/generate", "immediate"),
        ("/v1/generation/compose-and-generate", "immediate"),
        ("/v1/generation/queue-generation", "deferred"),
    ):
        query = {p["name"]: p for p in spec[path]["post"]["parameters"] if p["in"] == "query"}
        assert set(query) == {"backend", "mode", "save_images", "return_format"}, path
        assert query["mode"]["schema"]["default"] == mode, path
    queued = (await client.post("/v1/generation/queue-generation", json=SMALL)).json()
    job = await _wait_status(client, queued["delivery_id"], ("completed",))
    assert job["status"] == "completed"
