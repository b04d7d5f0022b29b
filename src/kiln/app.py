"""create_app(settings): the one FastAPI application serving every enabled surface."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from kiln import __version__
from kiln.core.auth import core_route_guard
from kiln.core.body_send import RawBodySend
from kiln.core.errors import install_error_handlers
from kiln.core.inputs import install_input_guards
from kiln.core.kernel import Kernel
from kiln.core.metrics import Metrics, MetricsMiddleware
from kiln.core.migrations import upgrade
from kiln.core.network import HostGuardMiddleware, install_log_redaction
from kiln.core.routing import install_route_index
from kiln.settings import Settings
from kiln.site import install_docs, install_index
from kiln.surfaces import (
    build_surface,
    enabled_surfaces,
    find_collisions,
    load_job_handlers,
    log_collisions,
    mount_surfaces,
)


def _swagger_assets() -> str | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return str(swagger_ui_bundle.swagger_ui_path)


def _install_core_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["kiln"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["kiln"], summary="Database and broker are reachable")
    async def readyz(request: Request) -> JSONResponse:
        kernel: Kernel = request.app.state.kernel
        checks: dict[str, str] = {}
        started = time.perf_counter()
        try:
            async with kernel.db.session() as session:
                await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=3)
            checks["database"] = "ok"
        except Exception as exc:  # reported, not raised: this route exists to say what is down
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            ok = await asyncio.wait_for(kernel.broker.ping(), timeout=3)
            checks["broker"] = "ok" if ok else "unreachable"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        ready = all(value == "ok" for value in checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": checks,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        tags=["kiln"],
        summary="Prometheus metrics",
        include_in_schema=True,
        dependencies=[Depends(core_route_guard("public_metrics"))],
    )
    async def metrics(request: Request) -> Response:
        payload, content_type = await request.app.state.metrics.render(request.app.state.kernel.db)
        return Response(payload, media_type=content_type)

    assets = _swagger_assets()
    if assets:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.resolved_database_url)
        install_log_redaction()  # again: the server may have configured logging since create_app
        log_collisions(app.state.collisions)
        kernel = Kernel(settings)
        app.state.kernel = kernel
        await kernel.start("serve")
        try:
            async with AsyncExitStack() as stack:
                for surface in app.state.mounted:  # startup/shutdown work a surface registered
                    await stack.enter_async_context(surface.app.router.lifespan_context(surface.app))
                yield
        finally:
            await kernel.stop()

    install_log_redaction()
    app = FastAPI(title="Kiln", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_error_handlers(app)
    install_input_guards(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(HostGuardMiddleware, settings=settings)  # refused before anything else runs
    app.add_middleware(RawBodySend, owner=app)  # outermost: it keeps the `send` for streamed bodies
    _install_core_routes(app)
    # The root's routes in order: engine routes and docs, each surface under its prefix, then every
    # surface at the root (a path two surfaces declare goes to the first in KILN_APPS), then the
    # JSON index of `/`.
    surfaces = [build_surface(app, name) for name in enabled_surfaces(settings)]
    app.state.mounted = surfaces
    app.state.surfaces = [surface.name for surface in surfaces]
    app.state.collisions = find_collisions(surfaces)
    install_docs(app, surfaces, app.state.collisions)
    mount_surfaces(app, surfaces)
    install_index(app, surfaces)
    install_route_index(app)  # the root's own routes too: a surface request skips the docs routes and mounts
    load_job_handlers(settings)
    return app
