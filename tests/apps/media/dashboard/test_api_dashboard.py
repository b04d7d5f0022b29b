"""Dashboard: the fleet (engine worker slots), dispatch, system health history, UX metrics."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from kiln.apps.media.config import MediaSettings, set_media_settings
from kiln.apps.media.dashboard.system_load import record_load_sample
from kiln.apps.media.dashboard.ux import UxMiddleware, tracker_for
from kiln.core.db import utcnow
from kiln.core.jobs import Worker
from kiln.settings import DEFAULT_WORKER_NAMES
from tests.apps.media.mediakit import add_media, photo, register, second_client, settings, upload, wait_status  # noqa: F401
from tests.core.test_jobs import wait_for_status


async def test_fleet_shows_the_titans_and_the_queue(app, client):
    user = await register(client, "ann@example.com")
    for _ in range(2):
        await add_media(app.state.kernel, user["id"], status="UPLOADED")
    body = (await client.get("/api/dashboard/ai-workers")).json()
    assert [n["name"] for n in body["nodes"]] == list(DEFAULT_WORKER_NAMES)
    assert {n["status"] for n in body["nodes"]} == {"Active"}
    assert body["total_active_fleet"] == 10 and body["cluster_status"] == "Optimal"
    assert body["queue_depth"] == 2
    assert set(body["nodes"][0]) >= {
        "name",
        "status",
        "tasks_processed_today",
        "current_task_id",
        "current_task_status",
    }
    assert (await client.get("/api/dashboard/ai-workers", headers={"Cookie": "access_token=x"})).status_code == 401


async def test_environment_is_prod_unless_configured(app, client):
    await register(client, "ann@example.com")
    kernel = app.state.kernel
    assert (await client.get("/api/dashboard/system-health")).json()["environment"] == "PROD"
    set_media_settings(kernel, MediaSettings(environment="STAGING"))
    assert (await client.get("/api/dashboard/system-health")).json()["environment"] == "STAGING"


async def test_fleet_never_shows_another_users_media_id(app, client):
    kernel = app.state.kernel
    ann = await register(client, "ann@example.com")
    async with second_client(app) as other:
        bob = await register(other, "bob@example.com")
        names = list(DEFAULT_WORKER_NAMES)
        anns = await add_media(kernel, ann["id"], status="PROCESSING", worker_name=names[0])
        bobs = await add_media(kernel, bob["id"], status="EXTRACTING", worker_name=names[1])
        async with kernel.db.session() as session:
            await session.execute(update(Worker).where(Worker.name.in_(names[:2])).values(status="busy"))
            await session.commit()
        for viewer, own, foreign in ((client, anns, bobs), (other, bobs, anns)):
            response = await viewer.get("/api/dashboard/ai-workers")
            assert foreign not in response.text and own in response.text
            nodes = {n["name"]: n for n in response.json()["nodes"]}
            mine, theirs = (names[0], names[1]) if own == anns else (names[1], names[0])
            assert nodes[mine]["current_task_id"] == own
            # Busy with someone else's item: shown as busy, without the id.
            assert nodes[theirs]["status"] == "Working" and nodes[theirs]["current_task_id"] is None
            assert nodes[theirs]["current_task_status"] in {"EXTRACTING", "PROCESSING"}


async def test_dispatch_reprocesses_a_media_item(app, client):
    await register(client, "ann@example.com")
    (media_id,) = (await upload(client, ("a.jpg", photo(), "image/jpeg"))).json()["media_ids"]
    await wait_status(client, media_id, {"READY"})
    response = await client.post("/api/dashboard/ai-workers/dispatch", json={"media_id": media_id})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == f"Task {body['job_id']} dispatched to the Titan fleet." and body["media_id"] == media_id
    job = await app.state.kernel.jobs.get(body["job_id"])
    assert job is not None and job.kind == "media.process"
    await wait_status(client, media_id, {"READY"})
    messages = [h["message"] for h in (await client.get(f"/api/map/{media_id}/logs")).json()["history"]]
    assert "Status changed to UPLOADED (dispatched)" in messages and messages.count("Status changed to EXTRACTING") == 2
    # READY is committed by the job itself; the slot's counter moves when the engine records the
    # job's outcome a moment later, so wait for the job rather than the status.
    await wait_for_status(app.state.kernel, body["job_id"], {"succeeded"})
    fleet = (await client.get("/api/dashboard/ai-workers")).json()
    assert sum(n["tasks_processed_today"] for n in fleet["nodes"]) >= 2
    assert (await client.post("/api/dashboard/ai-workers/dispatch")).status_code == 422
    unknown = await client.post(
        "/api/dashboard/ai-workers/dispatch", params={"media_id": "00000000-0000-4000-8000-000000000000"}
    )
    assert unknown.status_code == 404


async def test_system_health_history_comes_from_persisted_samples(app, client):
    await register(client, "ann@example.com")
    kernel = app.state.kernel
    await record_load_sample(kernel, now=utcnow() - timedelta(days=2))
    await record_load_sample(kernel, now=utcnow() - timedelta(days=30))  # pruned: older than retention
    body = (await client.get("/api/dashboard/system-health")).json()
    assert len(body["server_load"]) == 7 and len(body["load_history"]) == 7
    assert body["load_history"][4]["samples"] == 1 and body["load_history"][4]["load"] is not None
    assert body["load_history"][3]["samples"] == 0 and body["server_load"][3] == 0.0
    assert body["load_history"][6]["samples"] >= 1  # the sample taken when the server started
    assert body["samples"] == sum(d["samples"] for d in body["load_history"])
    assert body["status"] in {"STABILIZED", "ACTIVE", "HEAVY_LOAD", "STRESSED"}
    assert 0 <= body["uptime"] <= 100 and body["environment"] == "PROD"  # the contract's value
    assert body["runtime"] in {"host", "container"}
    assert 0 < body["memory_percent"] <= 100


async def test_user_experience_counts_active_users_and_response_times(app, client):
    await register(client, "ann@example.com")
    for _ in range(5):
        await client.get("/api/auth/me")
    async with second_client(app) as bob:
        await register(bob, "bob@example.com")
        await bob.get("/api/vault")
    body = (await client.get("/api/dashboard/user-experience")).json()
    assert body["active_now"] == 2
    assert body["active_trend"][-1] == 2 and len(body["active_trend"]) == 7
    assert body["daily_activity"][-1] == 2 and body["daily_activity"][:-1] == [0] * 6
    assert body["requests_last_hour"] >= 9 and body["avg_response_time"] > 0
    assert body["p50_response_time"] <= body["p95_response_time"]


async def test_ux_middleware_adds_well_under_a_millisecond(app, client):
    await register(client, "ann@example.com")
    cookie = f"access_token={client.cookies['access_token']}".encode()

    async def endpoint(scope, receive, send):
        return None

    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, ux_flush_seconds=3600))  # no flush mid-count
    middleware = UxMiddleware(endpoint)
    scope = {"type": "http", "app": app, "method": "GET", "path": "/api/vault", "headers": [(b"cookie", cookie)]}
    n = 3000

    async def timed(handler) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await handler(dict(scope), None, None)
        return (time.perf_counter() - started) / n * 1000

    await timed(middleware)  # warm the token cache
    tracker = tracker_for(app.state.kernel)
    before = tracker.count
    overhead_ms = await timed(middleware) - await timed(endpoint)
    assert overhead_ms < 1.0, f"{overhead_ms:.3f} ms per request"
    assert tracker.count - before == n  # it really recorded them
