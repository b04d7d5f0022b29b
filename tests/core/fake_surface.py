"""A small surface for the mounting tests, installed as `kiln.apps.lora` / `kiln.apps.arted` by
`as_surface()`: a `/health` that collides with robotics', an error handler, a middleware, a
WebSocket, and routes that report what the engine told them (root_path, surface)."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiln.core.auth.deps import OpenSurfaceGuard, surface_of


class Teapot(Exception):
    pass


class StampMiddleware:
    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app, self.name = app, name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", self.name.encode())]
            await send(message)

        await self.app(scope, receive, send if scope["type"] != "http" else stamped)


def _router(name: str) -> APIRouter:
    router = APIRouter(dependencies=[OpenSurfaceGuard])

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy", "service": name}

    @router.get("/api/v1/where")
    async def where(request: Request) -> dict[str, Any]:
        base = request.scope.get("root_path", "")
        return {"service": name, "root_path": base, "surface": surface_of(request), "self_url": base + "/api/v1/where"}

    @router.get("/api/v1/teapot")
    async def teapot() -> None:
        raise Teapot()

    @router.websocket("/ws/progress")
    async def progress(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(
            {"service": name, "root_path": websocket.scope.get("root_path", ""), "surface": surface_of(websocket)}
        )
        await websocket.close()

    return router


def _install(name: str):
    def install(app: FastAPI) -> None:
        async def teapot(_request: Request, _exc: Exception) -> JSONResponse:
            return JSONResponse({"error": "teapot", "service": name}, status_code=418)

        def started() -> None:  # state is shared with the main app, so the test can see it
            setattr(app.state, f"{name}_started", True)

        app.include_router(_router(name))
        app.router.add_event_handler("startup", started)
        app.add_exception_handler(Teapot, teapot)
        app.add_middleware(StampMiddleware, name=name)

    return install


def as_surface(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make `kiln.apps.<name>` this fake surface for the test."""
    package = types.ModuleType(f"kiln.apps.{name}")
    package.__spec__ = importlib.machinery.ModuleSpec(package.__name__, None)
    package.install = _install(name)  # type: ignore[attr-defined]
    router = types.ModuleType(f"kiln.apps.{name}.router")
    router.__spec__ = importlib.machinery.ModuleSpec(router.__name__, None)
    monkeypatch.setitem(sys.modules, package.__name__, package)
    monkeypatch.setitem(sys.modules, router.__name__, router)
