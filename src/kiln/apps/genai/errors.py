"""The genai error envelope `{"error": code, "message": text, "details"?: {...}}`.

It comes from the surface's own route class (`GenaiRoute`), never from app-wide handlers, so the
other surfaces keep their shapes. Every genai router is made with `genai_router()`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from kiln.apps.genai.routing import PrefixGuardedRouter
from kiln.core.auth import AuthError
from kiln.providers.http import OfflineBlocked

log = logging.getLogger(__name__)

# Codes for plain HTTPExceptions (FastAPI's own, e.g. a 404 from a dependency).
STATUS_CODES = {
    400: "invalid_payload",  # FastAPI raises it for bodies it cannot parse
    401: "missing_auth",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}
# Core auth codes whose genai name differs (the frontend reads `error`).
AUTH_CODES = {"token_revoked": "invalid_token", "user_not_found": "invalid_token"}
MAX_VALIDATION_ERRORS = 20


class GenaiError(Exception):
    """An error answered as the genai envelope; raise it from services and routers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def not_found(what: str, code: str | None = None) -> GenaiError:
    slug = code or f"{what.lower().replace(' ', '_')}_not_found"
    return GenaiError(404, slug, f"{what} not found")


def invalid(code: str, message: str, **details: Any) -> GenaiError:
    return GenaiError(400, code, message, details or None)


def conflict(code: str, message: str, **details: Any) -> GenaiError:
    return GenaiError(409, code, message, details or None)


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def _safe(value: Any) -> Any:
    """JSON-safe context values of a validation error (no inf/nan, no arbitrary objects)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value if not isinstance(value, str) else value[:200]
    return str(value)[:200]


def _validation_details(exc: RequestValidationError) -> dict[str, Any]:
    errors = []
    for item in exc.errors()[:MAX_VALIDATION_ERRORS]:
        # The offending input is not echoed: it may be huge, binary, or not encodable (1e400).
        entry = {
            "loc": [_safe(part) for part in item.get("loc", ())],
            "msg": _safe(item.get("msg", "")),
            "type": _safe(item.get("type", "")),
        }
        errors.append(entry)
    return {"errors": errors}


def _validation_message(details: dict[str, Any]) -> str:
    first = details["errors"][0] if details["errors"] else None
    if not first:
        return "Invalid request"
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    return f"Invalid request: {where}: {first['msg']}"


def render_exception(exc: Exception) -> Response | None:
    """The envelope for a known exception, or None for anything else."""
    if isinstance(exc, GenaiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    if isinstance(exc, OfflineBlocked):
        return error_response(
            409,
            "offline_provider_blocked",
            f"Runtime profile is offline; cloud provider {exc.provider} is not called",
            {"provider_slug": exc.provider},
        )
    if isinstance(exc, RecursionError):  # a JSON body nested beyond what the parser can follow
        return error_response(400, "invalid_payload", "Request body nested too deeply")
    if isinstance(exc, RequestValidationError):
        details = _validation_details(exc)
        return error_response(400, "invalid_payload", _validation_message(details), details)
    if isinstance(exc, AuthError):
        return error_response(exc.status_code, AUTH_CODES.get(exc.code, exc.code), str(exc.detail), None, exc.headers)
    if isinstance(exc, HTTPException):
        detail = exc.detail
        message = detail if isinstance(detail, str) else "Request failed"
        code = STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, message, None, exc.headers)
    return None


def _bad_text(value: Any, depth: int = 0) -> bool:
    """NUL or a lone surrogate anywhere in a decoded JSON value (PostgreSQL text refuses both)."""
    if depth > 64:
        return True
    if isinstance(value, str):
        return "\x00" in value or any(0xD800 <= ord(ch) <= 0xDFFF for ch in value)
    if isinstance(value, dict):
        return any(_bad_text(k, depth + 1) or _bad_text(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_bad_text(v, depth + 1) for v in value)
    return False


async def unsafe_input(request: Request) -> bool:
    """True for NUL bytes in the path or query, or NUL / lone surrogates in a JSON body."""
    raw_path = request.scope.get("raw_path") or b""
    if b"%00" in raw_path or "\x00" in request.url.path or "%00" in request.url.query:
        return True
    if request.method in ("POST", "PUT", "PATCH") and "json" in request.headers.get("content-type", ""):
        body = await request.body()
        if b"\\u" in body:  # only escaped text can carry either
            try:
                return _bad_text(json.loads(body))
            except ValueError:
                return False  # FastAPI answers the parse error
            except RecursionError:
                return True
    return False


class GenaiRoute(APIRoute):
    """Renders validation errors, HTTPExceptions (auth included) and GenaiError as the envelope."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                if await unsafe_input(request):
                    return error_response(400, "invalid_payload", "NUL characters and unpaired surrogates are refused")
                return await original(request)
            except Exception as exc:
                response = render_exception(exc)
                if response is None:
                    # Never the exception's text: it may hold paths, SQL or secrets.
                    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
                    return error_response(500, "internal_error", "Internal server error")
                return response

        return handler


def genai_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose routes answer errors in the genai envelope (and that skips a path none
    of its routes can match without trying them: `genai.routing`)."""
    return PrefixGuardedRouter(route_class=GenaiRoute, **kwargs)
