"""Core routes: health, readiness, metrics, offline docs; and the 500 that leaks nothing."""

from __future__ import annotations

import httpx
import pytest

import tests.core.job_handlers  # noqa: F401
from kiln.core.db import make_engine, make_session_factory
from tests.core.test_jobs import wait_for_status


async def test_healthz_and_readyz(client: httpx.AsyncClient):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


async def test_readyz_is_503_when_the_database_is_unreachable(app, client: httpx.AsyncClient):
    db = app.state.kernel.db
    healthy = db.engine, db.sessions
    db.engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    db.sessions = make_session_factory(db.engine)
    try:
        response = await client.get("/readyz")
    finally:
        await db.engine.dispose()
        db.engine, db.sessions = healthy
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["checks"]["database"].startswith("unreachable")
    assert "Traceback" not in response.text


async def test_metrics_count_requests_and_jobs(app, client: httpx.AsyncClient):
    kernel = app.state.kernel
    job = await kernel.jobs.submit("test.noop", {})
    await wait_for_status(kernel, job.id, {"succeeded"})
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert 'kiln_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'kiln_jobs{kind="test.noop",status="succeeded"} 1.0' in text
    assert "kiln_queue_depth 0.0" in text
    assert "kiln_http_request_seconds_bucket" in text


async def test_docs_work_offline(client: httpx.AsyncClient):
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text and "unpkg" not in page.text
    script = await client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert (await client.get("/openapi.json")).json()["info"]["title"] == "Kiln"


@pytest.fixture
def failing_route(app):
    async def explode() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_api_route("/_test/explode", explode)
    return "/_test/explode"


async def test_unhandled_errors_leak_nothing(app, failing_route: str):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get(failing_route)
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert "hunter2" not in response.text


async def test_first_start_on_a_fresh_home_migrates_and_serves(tmp_path):
    """What a new user does: no KILN_HOME yet, default SQLite, migrations on start."""
    from asgi_lifespan import LifespanManager

    from kiln.app import create_app
    from kiln.settings import Settings

    home = tmp_path / "does" / "not" / "exist"
    app = create_app(Settings(_env_file=None, home=home))
    async with LifespanManager(app, startup_timeout=60):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/assets")).status_code == 200
    assert (home / "kiln.db").exists()
