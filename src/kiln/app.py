"""create_app(settings): the one FastAPI application serving every enabled surface."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from kiln import __version__
from kiln.core.errors import install_error_handlers
from kiln.core.inputs import install_input_guards
from kiln.core.kernel import Kernel
from kiln.core.metrics import Metrics, MetricsMiddleware
from kiln.core.migrations import upgrade
from kiln.settings import Settings
from kiln.surfaces import install_surfaces


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
        body = {"status": "ready" if ready else "not ready", "checks": checks,
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["kiln"], summary="Prometheus metrics", include_in_schema=True)
    async def metrics(request: Request) -> Response:
        payload, content_type = await request.app.state.metrics.render(request.app.state.kernel.db)
        return Response(payload, media_type=content_type)

    assets = _swagger_assets()
    if assets:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Served from the package, not a CDN, so the docs work on an offline machine.
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Kiln API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await asyncio.to_thread(upgrade, settings.resolved_database_url)
        kernel = Kernel(settings)
        app.state.kernel = kernel
        await kernel.start("serve")
        try:
            yield
        finally:
            await kernel.stop()

    app = FastAPI(title="Kiln", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
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
    _install_core_routes(app)
    app.state.surfaces = install_surfaces(app, settings)
    return app
