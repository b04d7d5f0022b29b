"""One match per request: an application's routes flattened once and indexed by leading path segments.

FastAPI keeps included routers nested: matching a request walks every router level (recounting the
route versions of the whole subtree at each level), and handling it walks the levels again and
re-matches at each one. For a genai route that was ~0.3 ms of CPU, and the engine's root dispatch
matched every request once more before the sub-application did. `RouteIndex` lists the leaf routes
of an application in the order its router tries them, each with its full path, and buckets them by
the literal first two segments of that path, so a request is matched against the few routes that can
match it, once; `IndexedDispatch` then runs the chosen route the way the router would have
(same scope keys, same 405 for a partial match), without matching again.

It reads FastAPI internals (`_IncludedRouter`, the effective route context in `scope["fastapi"]`).
Anything it does not understand makes the index step aside: `RouteIndex.usable` is False and the
application's router matches as usual; `tests/core/test_route_index.py` pins that the fast path is
taken for the engine's surfaces, so an upgrade that changes those internals fails a test instead of
slowing down silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette._utils import get_route_path
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

try:  # FastAPI >= 0.16x keeps included routers nested; these are the pieces its router uses.
    from fastapi.routing import (
        _FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY,
        _apply_router_form_limits,
        _get_fastapi_scope,
        _IncludedRouter,
        _route_selected,
        _update_scope,
    )
except ImportError:  # pragma: no cover - another FastAPI: every index steps aside
    _IncludedRouter = None

_LEAF_KINDS = (APIRoute, APIWebSocketRoute, Route, WebSocketRoute, Mount)


@dataclass(slots=True)
class Leaf:
    """One route as the application's router would run it."""

    position: int
    route: BaseRoute
    """What matches and handles: the route itself at the top level, or the effective context of a
    route of an included router (carrying its full path and the includes' dependencies)."""
    original: BaseRoute
    included: bool
    path: str

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return self.route.matches(scope)

    async def handle(self, scope: Scope, child_scope: Scope, receive: Receive, send: Send) -> None:
        _update_scope(scope, child_scope)
        mount = isinstance(self.original, Mount)
        if not self.included:  # what Router.app does with a top-level route it chose
            _route_selected(scope=scope, path=getattr(self.route, "path_format", None), mount=mount)
            await self.route.handle(scope, receive, send)
            return
        # What _IncludedRouter._handle_selected does with the leaf it chose.
        context: Any = self.route
        starlette_route = context.starlette_route
        _route_selected(
            scope=scope, path=getattr(starlette_route, "path_format", None) or context.path_format, mount=mount
        )
        _get_fastapi_scope(scope)[_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY] = context
        if isinstance(self.original, APIRoute):
            scope["route"] = self.original
            await self.original.handle(scope, receive, send)
            return
        await starlette_route.handle(scope, receive, send)


def request_segments(path: str) -> tuple[str, str] | None:
    """The first two segments of a request path (`""` past its end): `/v1/models/x` -> (v1, models)."""
    if not path.startswith("/"):
        return None
    parts = path[1:].split("/", 2)
    return parts[0], parts[1] if len(parts) > 1 else ""


def literal_segments(path: str, mount: bool) -> tuple[str, ...]:
    """The leading segments (at most two) every path this route matches has, as request_segments
    reads them: `/v1/models/{id}` -> (v1, models), `/health` -> (health, ""), `/{id}` -> ()."""
    if mount and "{" not in path:
        path += "/"  # a mount matches `<path>/<anything>`
    literal = path.split("{", 1)[0]
    if not literal.startswith("/"):
        return ()
    parts = literal[1:].split("/")
    if literal == path and not mount:  # the path ends after its last part
        return (*parts, "")[:2]
    return tuple(parts[:-1])[:2]  # the last part is cut by a parameter


@dataclass
class RouteIndex:
    """The leaf routes of `app`, bucketed by their literal first two segments; built on first use and again
    when the number of top-level routes changes (surfaces add theirs in `install()`).

    `install_route_index(app)` makes the application's router run the routes it matches."""

    app: FastAPI
    enabled: bool = True
    """False when the router has middleware of its own, which running a route directly would skip."""
    _usable: bool = False
    _built_for: int = -1
    _by_two: dict[tuple[str, str], list[Leaf]] = field(default_factory=dict)
    _by_one: dict[str, list[Leaf]] = field(default_factory=dict)
    _any: list[Leaf] = field(default_factory=list)
    _all: list[Leaf] = field(default_factory=list)

    def _refresh(self) -> None:
        routes = self.app.router.routes
        if self._built_for == len(routes):
            return
        leaves = _leaves(self.app) if self.enabled else None
        self._usable = leaves is not None
        self._built_for = len(routes)
        self._by_two, self._by_one, self._any = {}, {}, []
        self._all = leaves or []
        if leaves is None:
            return
        # Each list holds every route that can match a request with those segments, in order.
        two: dict[tuple[str, str], list[Leaf]] = {}
        one: dict[str, list[Leaf]] = {}
        for leaf in leaves:
            segments = literal_segments(leaf.path, isinstance(leaf.original, Mount))
            if len(segments) == 2:
                two.setdefault((segments[0], segments[1]), []).append(leaf)
                one.setdefault(segments[0], [])
            elif segments:
                one.setdefault(segments[0], []).append(leaf)
            else:
                self._any.append(leaf)

        def in_order(*groups: list[Leaf]) -> list[Leaf]:
            return sorted((leaf for group in groups for leaf in group), key=lambda leaf: leaf.position)

        self._by_one = {first: in_order(bucket, self._any) for first, bucket in one.items()}
        self._by_two = {key: in_order(bucket, one[key[0]], self._any) for key, bucket in two.items()}

    @property
    def usable(self) -> bool:
        """Whether the index understood every route (else the router matches as usual)."""
        self._refresh()
        return self._usable

    def match(self, scope: Scope) -> tuple[Match, Leaf | None, Scope]:
        """The route the application's router would choose: the first full match in its order,
        else the first partial one (a path match with another method)."""
        self._refresh()
        if not self._usable:  # the router's own top-level matching; it matches again when it runs
            return _match_top_level(self.app.router.routes, scope)
        segments = request_segments(get_route_path(scope))
        if segments is None:
            candidates = self._all
        else:
            candidates = self._by_two.get(segments) or self._by_one.get(segments[0]) or self._any
        partial: tuple[Leaf, Scope] | None = None
        for leaf in candidates:
            match, child_scope = leaf.matches(scope)
            if match is Match.FULL:
                return match, leaf, child_scope
            if match is Match.PARTIAL and partial is None:
                partial = (leaf, child_scope)
        if partial is not None:
            return Match.PARTIAL, partial[0], partial[1]
        return Match.NONE, None, {}


def _leaves(app: FastAPI) -> list[Leaf] | None:
    """Leaf routes in the order the router tries them; None when something is not understood
    (form limits, frontend routes, a kind of included route it cannot read)."""
    router = app.router
    if _IncludedRouter is None or getattr(router, "_low_priority_routes", None):
        return None
    leaves: list[Leaf] = []
    for route in router.routes:
        if isinstance(route, _IncludedRouter):
            if not _add_included(route, leaves):
                return None
        else:  # the router runs a top-level route by its own matches() and handle(), whatever it is
            path = route.path if isinstance(route, _LEAF_KINDS) else ""  # "": tried for every path
            leaves.append(Leaf(len(leaves), route, route, False, path))
    return leaves


def _add_included(included: Any, leaves: list[Leaf]) -> bool:
    context = included.include_context
    # Form limits are applied per include level on the way in; a body limit wraps non-API routes.
    if context.form_limits or included.original_router._low_priority_routes:
        return False
    for candidate in included.effective_candidates():
        if isinstance(candidate, _IncludedRouter):
            if not _add_included(candidate, leaves):
                return False
            continue
        original = candidate.original_route
        if not isinstance(original, _LEAF_KINDS):
            return False
        if isinstance(original, APIRoute):
            path = candidate.path
        elif context.max_body_size is None and candidate.starlette_route is not None:
            path = candidate.starlette_route.path
        else:
            return False
        leaves.append(Leaf(len(leaves), candidate, original, True, path))
    return True


def _match_top_level(routes: list[BaseRoute], scope: Scope) -> tuple[Match, None, Scope]:
    partial = Match.NONE
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return match, None, {}
        if match is Match.PARTIAL:
            partial = match
    return partial, None, {}


class IndexedDispatch:
    """The innermost app of an application's router: runs the route the index matched, or the one
    a dispatcher outside already matched with this index (`scope[MATCHED_SCOPE_KEY]`)."""

    def __init__(self, index: RouteIndex, fallback: ASGIApp) -> None:
        self.index = index
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            chosen = scope.pop(MATCHED_SCOPE_KEY, None)
            if chosen is not None and chosen[0] is self.index:
                leaf, child_scope = chosen[1], chosen[2]
            else:
                _, leaf, child_scope = self.index.match(scope)
            router = self.index.app.router
            if leaf is not None:
                _apply_router_form_limits(scope, router.form_limits)
                scope.setdefault("router", router)
                await leaf.handle(scope, child_scope, receive, send)
                return
            if self.index.usable:  # nothing matches: what the router does then, without matching again
                scope.setdefault("router", router)
                await self._not_found(router, scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    async def _not_found(self, router: Any, scope: Scope, receive: Receive, send: Send) -> None:
        """Redirect to the path with or without its trailing slash when that one has a route, else 404."""
        route_path = get_route_path(scope)
        if scope["type"] == "http" and router.redirect_slashes and route_path != "/":
            redirect_scope = dict(scope)
            if route_path.endswith("/"):
                redirect_scope["path"] = redirect_scope["path"].rstrip("/")
            else:
                redirect_scope["path"] = redirect_scope["path"] + "/"
            if self.index.match(redirect_scope)[0] is not Match.NONE:
                await RedirectResponse(url=str(URL(scope=redirect_scope)))(scope, receive, send)
                return
        await router.default(scope, receive, send)


MATCHED_SCOPE_KEY = "kiln.matched"
"""(index, leaf, child scope) a dispatcher outside the application put in the scope."""


def install_route_index(app: FastAPI) -> RouteIndex:
    """Index `app`'s routes and let its router run them through the index (unless the router has
    middleware of its own, which a directly run route would skip: then it matches as usual)."""
    router = app.router
    index = RouteIndex(app)
    if router.middleware_stack != router.app:
        index.enabled = False
        return index
    router.middleware_stack = IndexedDispatch(index, router.middleware_stack)
    return index
