"""Kiln's own pages: the OpenAPI documents and Swagger UI (whole app and per surface), the HTML index.

Swagger UI is served from the package, not a CDN, so the docs work on an offline machine.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from kiln import __version__
from kiln.core.auth import core_route_guard
from kiln.surfaces import Collision, Surface, normalized_path, route_signatures

DocsGuard = Depends(core_route_guard("public_docs"))

CONTRACTS = {
    "robotics": "ROS recordings to training datasets",
    "genai": "GenAI control plane: providers, models, knowledge bases, chat, agents",
    "media": "photo-processing fleet with accounts, vault and maps",
    "lora": "LoRA adapters, prompt composition, image generation",
    "arted": "config-driven creative pipelines",
}


def root_openapi(app: FastAPI, surfaces: list[Surface], collisions: list[Collision]) -> dict[str, Any]:
    """What the root answers: the engine's routes and each surface's routes minus those it lost."""
    losers = {(c.loser, c.method, normalized_path(c.path)) for c in collisions}
    routes: list[Any] = [route for route in app.router.routes if isinstance(route, APIRoute)]
    for surface in surfaces:
        taken: set[int] = set()
        for method, path, context in route_signatures(surface.app):
            if (surface.name, method, normalized_path(path)) in losers or id(context) in taken:
                continue
            taken.add(id(context))
            routes.append(context)
    return get_openapi(title=app.title, version=app.version, routes=routes)


def _swagger(openapi_url: str, title: str, root: str) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
        swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
        swagger_favicon_url=f"{root}/docs-assets/favicon-32x32.png",
    )


def install_docs(app: FastAPI, surfaces: list[Surface], collisions: list[Collision]) -> None:
    """`/openapi.json` + `/docs` for the root, `/<surface>/openapi.json` + `/<surface>/docs` for each
    surface (registered before the surfaces' mounts, so they win over them)."""
    cache: dict[str, dict[str, Any]] = {}

    def whole() -> dict[str, Any]:
        if "" not in cache:
            cache[""] = root_openapi(app, surfaces, collisions)
        return cache[""]

    app.openapi = whole  # type: ignore[method-assign]

    @app.get("/openapi.json", include_in_schema=False, dependencies=[DocsGuard])
    async def openapi() -> JSONResponse:
        return JSONResponse(whole())

    @app.get("/docs", include_in_schema=False, dependencies=[DocsGuard])
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _swagger(f"{root}/openapi.json", "Kiln API", root)

    for surface in surfaces:
        _install_surface_docs(app, surface, cache)


def _install_surface_docs(app: FastAPI, surface: Surface, cache: dict[str, dict[str, Any]]) -> None:
    prefix = surface.prefix

    async def openapi(request: Request) -> JSONResponse:
        if prefix not in cache:
            cache[prefix] = get_openapi(title=f"Kiln {surface.name}", version=__version__, routes=surface.app.routes)
        root = request.scope.get("root_path", "")
        return JSONResponse({**cache[prefix], "servers": [{"url": root + prefix}]})

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _swagger(f"{root}{prefix}/openapi.json", f"Kiln {surface.name} API", root)

    app.add_api_route(f"{prefix}/openapi.json", openapi, include_in_schema=False, dependencies=[DocsGuard])
    app.add_api_route(f"{prefix}/docs", docs, include_in_schema=False, dependencies=[DocsGuard])


def _wants_html(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"accept":
            return b"text/html" in value
    return False


def index_page(surfaces: list[Surface], root: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.name)}</td><td>{html.escape(CONTRACTS.get(s.name, ''))}</td>"
        f'<td><a href="{html.escape(root + s.prefix)}/">{html.escape(root + s.prefix)}</a></td>'
        f'<td><a href="{html.escape(root + s.prefix)}/docs">{html.escape(root + s.prefix)}/docs</a></td></tr>'
        for s in surfaces
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Kiln</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
        "td,th{padding:.3rem .8rem;text-align:left;border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>Kiln {html.escape(__version__)}</h1>"
        "<p>Point a frontend at the root, or at its surface's prefix when it needs a path another "
        "surface also declares (the root serves the first surface of <code>KILN_APPS</code>).</p>"
        "<table><tr><th>surface</th><th>contract</th><th>base URL</th><th>contract docs</th></tr>"
        f"{rows}</table>"
        f'<p>Engine: <a href="{root}/docs">{root}/docs</a> (all root paths), <a href="{root}/healthz">'
        f'{root}/healthz</a>, <a href="{root}/readyz">{root}/readyz</a>, <a href="{root}/metrics">{root}/metrics'
        "</a></p></body></html>"
    )


class IndexPage(BaseRoute):
    """`GET /` asked for HTML (a browser): Kiln's page. Anything else falls through to the surface
    that declares `/` (its contract's body), or to `index_json`."""

    def __init__(self, surfaces: list[Surface]) -> None:
        self.surfaces = surfaces

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope.get("method") in ("GET", "HEAD")
            and scope["path"] == scope.get("root_path", "") + "/"
            and _wants_html(scope)
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await HTMLResponse(index_page(self.surfaces, scope.get("root_path", "")))(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> object:
        raise NoMatchFound(name, path_params)


def install_index(app: FastAPI, surfaces: list[Surface]) -> None:
    """The HTML page first; the JSON listing last (after the surfaces, which may declare `/`)."""
    app.router.routes.insert(0, IndexPage(surfaces))

    async def index_json(request: Request) -> dict[str, Any]:
        root = request.scope.get("root_path", "")
        return {
            "name": "Kiln",
            "version": __version__,
            "surfaces": [
                {"name": s.name, "prefix": root + s.prefix, "docs": f"{root}{s.prefix}/docs"} for s in surfaces
            ],
        }

    app.router.routes.append(APIRoute("/", index_json, methods=["GET"], include_in_schema=False))
