"""Hostile input stopped at the door, for every surface at once.

* JSON request bodies are decoded as I-JSON (RFC 7493): no unpaired surrogates (they are not
  Unicode text and cannot be stored or encoded), no NUL characters (PostgreSQL text, file
  names and C libraries cannot hold them), no number that does not fit a 64-bit float or
  integer (`1e400` would become `inf`, `2**64` overflows every database integer). A refused
  body fails FastAPI's own JSON decoding step, so each surface renders the refusal as its usual
  request-validation error, in its own envelope (`loc: ["body", <offset>]`, the reason in
  `ctx.error`).
* Text a surface parses itself goes through `storable()` (NUL, unpaired surrogates -> U+FFFD).
* URLs: a NUL in the path or a `%00` in the query string becomes U+FFFD, so it can reach
  no file name and no SQL text (a name with U+FFFD is simply not found).

`install_input_guards(app)` is called once by `create_app`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.core.body_send import body_transparent

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_NUL_QUERY = re.compile(rb"%00", re.IGNORECASE)


class _Refused(ValueError):
    pass


def _parse_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise _Refused(f"integer {text[:40]} is out of range (a 64-bit signed integer is the limit)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"number {text[:40]} is out of range (it does not fit a 64-bit float)")
    return value


def _parse_constant(name: str) -> float:
    raise _Refused(f"{name} is not a JSON number")


def _bad_escape(doc: str) -> tuple[int, str] | None:
    """Offset and reason of the first `\\u0000` or unpaired surrogate escape in a JSON text."""
    pending: re.Match[str] | None = None  # a high surrogate waiting for its low half
    for match in _ESCAPE.finditer(doc):
        start = match.start()
        if start and _escaped(doc, start):
            continue  # `\\u0000` is a backslash followed by text, not an escape
        code = int(match.group(1), 16)
        if pending is not None:
            if 0xDC00 <= code <= 0xDFFF and start == pending.end():
                pending = None
                continue
            return pending.start(), f"unpaired surrogate \\u{pending.group(1)} is not Unicode text"
        if code == 0:
            return start, "text may not contain the NUL character (\\u0000)"
        if 0xD800 <= code <= 0xDBFF:
            pending = match
        elif 0xDC00 <= code <= 0xDFFF:
            return start, f"unpaired surrogate \\u{match.group(1)} is not Unicode text"
    if pending is not None:
        return pending.start(), f"unpaired surrogate \\u{pending.group(1)} is not Unicode text"
    return None


def _escaped(doc: str, index: int) -> bool:
    """Whether the backslash at `index` is itself escaped (preceded by an odd run of backslashes)."""
    run = 0
    while index - run - 1 >= 0 and doc[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def loads_strict(body: bytes | str) -> Any:
    """`json.loads` for request bodies; refusals raise `json.JSONDecodeError` saying why."""
    doc = body.decode("utf-8") if isinstance(body, bytes) else body  # UnicodeDecodeError: not UTF-8
    try:
        value = json.loads(doc, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _Refused as exc:
        raise json.JSONDecodeError(str(exc), doc, 0) from None
    if "\\u" in doc:
        bad = _bad_escape(doc)
        if bad is not None:
            raise json.JSONDecodeError(bad[1], doc, bad[0])
    return value


async def _strict_json(self: Request) -> Any:
    if not hasattr(self, "_json"):
        self._json = loads_strict(await self.body())
    return self._json


@body_transparent  # changes the scope, hands `send` on unchanged
class UrlTextGuard:
    """Pure ASGI middleware: NUL in the URL path or query becomes U+FFFD (see the module doc)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            query: bytes = scope.get("query_string", b"")
            if "\x00" in scope.get("path", "") or b"%00" in query.lower():
                scope = dict(scope)
                scope["path"] = scope["path"].replace("\x00", "\ufffd")
                if "raw_path" in scope and scope["raw_path"] is not None:
                    scope["raw_path"] = _NUL_QUERY.sub(b"%EF%BF%BD", scope["raw_path"].replace(b"\x00", b"%00"))
                scope["query_string"] = _NUL_QUERY.sub(b"%EF%BF%BD", query)
        await self.app(scope, receive, send)


def storable(text: str) -> str:
    """`text` as something every database and file system can hold: NUL and unpaired surrogates
    become U+FFFD. For text a surface parses itself (a multipart header, a file name)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def install_input_guards(app: Any) -> None:
    Request.json = _strict_json  # type: ignore[method-assign]  # FastAPI decodes bodies through it
    app.add_middleware(UrlTextGuard)
