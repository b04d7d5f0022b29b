"""An APIRouter that turns a request away at once when no route of it can match the path.

The genai surface has some 180 routes in 15 routers, and every request is matched twice (once
by the engine's root dispatch, once by the sub-application). FastAPI tries each route's regex in
turn, so `POST /v1/playgrounds/sessions/{id}/messages/stream` cost about 0.8 ms of routing alone.
Every route's path starts with its literal text up to the first `{`, so a router whose routes'
literal prefixes all differ from the start of the path cannot match it (not even partially: a
partial match is a path match with another method) and answers NONE without trying its routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette._utils import get_route_path
from starlette.routing import Match, Mount, Route, WebSocketRoute
from starlette.types import Scope

_PATH_ROUTES = (APIRoute, APIWebSocketRoute, Route, WebSocketRoute, Mount)


def literal_prefix(path: str) -> str:
    """The part of a route path before its first parameter."""
    return path.split("{", 1)[0]


class PrefixGuardedRouter(APIRouter):
    """An APIRouter that answers NONE for a path none of its routes' literal prefixes starts.

    When a route of a kind it cannot read is added (anything but plain and WebSocket routes,
    mounts and included routers), the guard steps aside and every request is matched as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._included: list[tuple[str, APIRouter]] = []
        self._parents: list[PrefixGuardedRouter] = []
        self._guard: tuple[int, tuple[str, ...] | None] | None = None

    def include_router(self, router: APIRouter, *args: Any, prefix: str = "", **kwargs: Any) -> None:
        super().include_router(router, *args, prefix=prefix, **kwargs)
        self._included.append((prefix, router))
        if isinstance(router, PrefixGuardedRouter):
            router._parents.append(self)
        self.forget_prefixes()

    def add_api_route(self, *args: Any, **kwargs: Any) -> None:
        super().add_api_route(*args, **kwargs)
        self.forget_prefixes()

    def add_api_websocket_route(self, *args: Any, **kwargs: Any) -> None:
        super().add_api_websocket_route(*args, **kwargs)
        self.forget_prefixes()

    def forget_prefixes(self) -> None:
        """Drop the computed prefixes of this router and of every router that includes it."""
        self._guard = None
        for parent in self._parents:
            parent.forget_prefixes()

    def literal_prefixes(self) -> tuple[str, ...] | None:
        """Literal prefixes of every route reachable through this router; None when one is unknown.

        Computed once; adding a route through this class (or appending to `routes`) recomputes them."""
        if self._guard is None or self._guard[0] != len(self.routes):
            self._guard = (len(self.routes), self._compute_prefixes())
        return self._guard[1]

    def _compute_prefixes(self) -> tuple[str, ...] | None:
        prefixes: set[str] = set()
        own = [route for route in self.routes if isinstance(route, _PATH_ROUTES)]
        if len(self.routes) - len(own) != len(self._included):  # something this class does not know
            return None
        prefixes.update(literal_prefix(route.path) for route in own)  # type: ignore[attr-defined]
        for include_prefix, router in self._included:
            inner = _prefixes_of(router)
            if inner is None:
                return None
            prefixes.update(include_prefix + prefix for prefix in inner)
        return tuple(sorted(prefixes))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        prefixes = self.literal_prefixes()
        if (
            prefixes is not None
            and scope["type"] in ("http", "websocket")
            and not get_route_path(scope).startswith(prefixes)
        ):
            return Match.NONE, {}
        return super().matches(scope)


def _prefixes_of(router: APIRouter) -> Sequence[str] | None:
    if isinstance(router, PrefixGuardedRouter):
        return router.literal_prefixes()
    routes = router.routes
    if not all(isinstance(route, _PATH_ROUTES) for route in routes):
        return None
    return [literal_prefix(route.path) for route in routes]  # type: ignore[attr-defined]
