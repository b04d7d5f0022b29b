"""The arted error envelope `{"error", "status", "details"}`, produced by the router's own route class.

`ArtedError` carries an HTTP status, a short `status` word (`not_found`, `invalid_request`, ...)
and optional extra keys the reference puts beside them (`run_id`, `metadata`, `format`, ...).
Validation errors, HTTP exceptions and auth refusals of arted routes render in the same shape;
an unexpected exception is logged and answered `500 {"error": "internal error", ...}` without text.
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

STATUS_WORDS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    416: "range_not_satisfiable",
    422: "invalid_request",
    501: "not_implemented",
    502: "upstream_error",
    503: "not_configured",
    504: "timeout",
}


class ArtedError(Exception):
    def __init__(self, http_status: int, error: str, *, status: str | None = None, details: Any = None, **extra: Any):
        super().__init__(error)
        self.http_status = http_status
        self.error = error
        self.status = status or STATUS_WORDS.get(http_status, "error")
        self.details = details
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "status": self.status, "details": self.details, **self.extra}


def not_found(what: str, **extra: Any) -> ArtedError:
    return ArtedError(404, f"{what} not found", **extra)


def envelope(
    http_status: int,
    error: str,
    details: Any = None,
    *,
    status: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        ArtedError(http_status, error, status=status, details=details).body(), status_code=http_status, headers=headers
    )


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:20]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        out.append({"field": loc, "message": str(err.get("msg", ""))[:200]})
    return out


class ArtedRoute(APIRoute):
    """Renders every refusal of an arted route in the arted envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ArtedError as exc:
                return JSONResponse(exc.body(), status_code=exc.http_status)
            except RequestValidationError as exc:
                return envelope(400, "Invalid request", _validation_details(exc))
            except HTTPException as exc:
                detail = exc.detail if isinstance(exc.detail, str) else "request refused"
                return envelope(exc.status_code, detail, headers=getattr(exc, "headers", None))
            except Exception:
                log.exception("arted: unhandled error on %s %s", request.method, request.url.path)
                return envelope(500, "internal error", "the error was logged", status="internal_error")

        return route
