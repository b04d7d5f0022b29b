"""Error responses that never leak internals, and never fail to encode.

* A 500 says only that something broke; the traceback goes to the log.
* `encodable(value)` turns anything a validation error may echo into JSON that always encodes:
  non-finite floats become the strings "inf" / "-inf" / "nan", unpaired surrogates become
  U+FFFD, bytes are decoded, unknown objects become their `str`. Surfaces that render request
  validation errors in their own envelope pass the errors through it.
* FastAPI's default 422 (`{"detail": [...]}`) is kept exactly, with `encodable` applied.
* `MESSAGE_OR_VALIDATION_422`: the OpenAPI description of a 422 that is either FastAPI's list
  or a text `detail` (a route that also refuses with `HTTPException(422, "...")`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

log = logging.getLogger(__name__)


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def encodable(value: Any) -> Any:
    """`value` as plain JSON data that `json.dumps(..., allow_nan=False)` always accepts."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(encodable(k)): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encodable(v) for v in value]
    try:
        return encodable(jsonable_encoder(value))
    except Exception:  # an object jsonable_encoder cannot take apart: say what it is
        return _text(str(value))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": encodable(exc.errors())}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _unhandled)
    app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]


class _ValidationItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class MessageOrValidationError(BaseModel):
    """FastAPI's request-validation list, or one text message saying what to fix."""

    detail: str | list[_ValidationItem]


MESSAGE_OR_VALIDATION_422: dict[int | str, dict[str, Any]] = {
    422: {"model": MessageOrValidationError, "description": "Validation error (a list) or a refusal (text)"},
}
