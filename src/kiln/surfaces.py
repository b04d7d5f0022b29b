"""Which surfaces (contracts) this process serves, and how they plug into the app and the workers.

A surface package `kiln.apps.<name>` offers `install(app)` (routes, error handling, middleware)
and may have a `jobs` module whose import registers its job handlers and periodic tasks.

Each enabled surface is installed into a sub-application of its own, which is served twice:
whole under `/<name>` (its `root_path` is then `/<name>`) and at the root (`root_path` ""), where
a request goes to the first surface in `KILN_APPS` order that has a route for it. Both addresses
run the same sub-application, so the exception handlers and middleware a surface installs apply
to both. Every request that reaches a surface carries its name in `scope["kiln.surface"]`.

A request is matched once: each surface's routes are indexed (`kiln.core.routing.RouteIndex`), the
root dispatch hands the route it found to the sub-application, whose router runs it without
matching again.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import BaseRoute, Match, NoMatchFound, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.core.body_send import RawBodySend
from kiln.core.errors import install_error_handlers
from kiln.core.routing import MATCHED_SCOPE_KEY, RouteIndex, install_route_index
from kiln.settings import Settings

log = logging.getLogger(__name__)

SURFACE_SCOPE_KEY = "kiln.surface"
"""The ASGI scope key naming the surface a request was routed to."""


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def enabled_surfaces(settings: Settings) -> list[str]:
    """Enabled surfaces that exist in this build, in the configured order."""
    return [name for name in settings.apps if _has_module(f"kiln.apps.{name}.router")]


def load_job_handlers(settings: Settings) -> list[str]:
    """Import each enabled surface's `jobs` module (registers handlers and periodic tasks)."""
    loaded = []
    for name in enabled_surfaces(settings):
        module = f"kiln.apps.{name}.jobs"
        if _has_module(module):
            importlib.import_module(module)
            loaded.append(module)
    for module in settings.job_modules:
        importlib.import_module(module)
        loaded.append(module)
    return loaded


class _Tagged:
    """ASGI wrapper that names the surface in the scope, then runs its sub-application."""

    def __init__(self, name: str, app: ASGIApp) -> None:
        self.name = name
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SURFACE_SCOPE_KEY] = self.name
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Surface:
    name: str
    app: FastAPI
    """The sub-application the surface's `install()` filled."""
    asgi: ASGIApp
    routes: RouteIndex
    """The sub-application's routes, indexed; its router runs what this index matches."""

    @property
    def prefix(self) -> str:
        return f"/{self.name}"


@dataclass(frozen=True, slots=True)
class Collision:
    """`method path` declared by two surfaces: `winner` serves it at the root, `loser` only under its prefix."""

    method: str
    path: str
    winner: str
    loser: str

    def message(self) -> str:
        verb = "WebSocket" if self.method == "WEBSOCKET" else self.method
        return (
            f"{verb} {self.path} is declared by {self.winner} and {self.loser}: the root serves "
            f"{self.winner}'s; {self.loser}'s answers at /{self.loser}{self.path}"
        )


def normalized_path(path: str) -> str:
    """`/a/{id}` and `/a/{item_id}` match the same requests; a `:path` convertor does not."""
    return re.sub(r"\{[^}:]*(:[^}]*)?\}", lambda m: "{" + (m.group(1) or "") + "}", path)


def route_signatures(app: FastAPI) -> list[tuple[str, str, object]]:
    """(method, path, route context) of every route of `app`; WebSocket routes as method WEBSOCKET."""
    signatures = []
    for context in iter_route_contexts(app.router.routes):
        path = context.path
        if path is None:
            continue
        if isinstance(context.original_route, APIWebSocketRoute | WebSocketRoute):
            methods = {"WEBSOCKET"}
        else:
            methods = set(context.methods or {"*"})
            if "GET" in methods:
                methods.discard("HEAD")
        signatures.extend((method, path, context) for method in sorted(methods))
    return signatures


def find_collisions(surfaces: list[Surface]) -> list[Collision]:
    """Routes two surfaces declare; the first in order keeps the root address."""
    owner: dict[tuple[str, str], str] = {}
    collisions = []
    for surface in surfaces:
        for method, path, _context in route_signatures(surface.app):
            key = (method, normalized_path(path))
            first = owner.setdefault(key, surface.name)
            if first != surface.name:
                collisions.append(Collision(method, path, first, surface.name))
    return collisions


class RootSurfaceRoutes(BaseRoute):
    """Serves every surface's routes at the root: the first surface (in KILN_APPS order) with a
    route matching the request gets it, and runs it through its own sub-application."""

    def __init__(self, surfaces: list[Surface]) -> None:
        self.surfaces = surfaces
        self._by_name = {surface.name: surface for surface in surfaces}

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """The first surface with a full match, else the first with a partial one (405); the route
        found goes along in the scope so the surface's router runs it without matching again."""
        if scope["type"] not in ("http", "websocket"):
            return Match.NONE, {}
        partial = None
        for surface in self.surfaces:
            match, leaf, child_scope = surface.routes.match(scope)
            if match is Match.FULL:
                return Match.FULL, {
                    SURFACE_SCOPE_KEY: surface.name,
                    MATCHED_SCOPE_KEY: (surface.routes, leaf, child_scope),
                }
            if match is Match.PARTIAL and partial is None:
                partial = {SURFACE_SCOPE_KEY: surface.name, MATCHED_SCOPE_KEY: (surface.routes, leaf, child_scope)}
        if partial is not None:
            return Match.PARTIAL, partial
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._by_name[scope[SURFACE_SCOPE_KEY]].asgi(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object) -> object:
        raise NoMatchFound(name, path_params)


def build_surface(parent: FastAPI, name: str) -> Surface:
    """A sub-application sharing `parent`'s state (kernel, settings), filled by the surface's install()."""
    sub = FastAPI(title=f"Kiln {name}", openapi_url=None, docs_url=None, redoc_url=None)
    sub.state = parent.state
    install_error_handlers(sub)
    importlib.import_module(f"kiln.apps.{name}").install(sub)
    sub.add_middleware(RawBodySend, owner=sub, outermost=False)  # after the surface's own middleware
    return Surface(name, sub, _Tagged(name, sub), install_route_index(sub))


def mount_surfaces(app: FastAPI, surfaces: list[Surface]) -> None:
    """Mount each surface under its prefix, then all of them at the root (after the routes so far)."""
    for surface in surfaces:
        app.mount(surface.prefix, surface.asgi, name=surface.name)
    app.router.routes.append(RootSurfaceRoutes(surfaces))


def log_collisions(collisions: list[Collision]) -> None:
    for collision in collisions:
        log.warning("route collision: %s", collision.message())
