"""The surface's error envelope `{"type","title","status"}` and the route class that renders it.

The route class catches the surface's own `LoraError`, FastAPI's `HTTPException` (auth
included) and request validation errors, so the shape never depends on app-wide handlers.
Anything unexpected becomes a 500 that says nothing about the exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException  # FastAPI's is a subclass; body-parse errors raise Starlette's

log = logging.getLogger(__name__)


class LoraError(Exception):
    """A refusal with an HTTP status and a human title."""

    def __init__(self, status: int, title: str):
        super().__init__(title)
        self.status = status
        self.title = title


def not_found(what: str) -> LoraError:
    return LoraError(404, f"{what} not found")


def bad_request(title: str) -> LoraError:
    return LoraError(400, title)


def envelope(status: int, title: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": "about:blank", "title": title, "status": status}, status_code=status, headers=headers)


def _validation_title(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "Invalid request: " + "; ".join(parts) if parts else "Invalid request"


class LoraRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoraError as exc:
                return envelope(exc.status, exc.title)
            except RequestValidationError as exc:
                return envelope(422, _validation_title(exc))
            except HTTPException as exc:
                return envelope(exc.status_code, str(exc.detail), getattr(exc, "headers", None))
            except Exception:
                log.exception("lora: unhandled error on %s %s", request.method, request.url.path)
                return envelope(500, "Internal Server Error")

        return route
