"""A short way out for a streamed response's body messages, taken only where it changes nothing.

A streamed response (a playground turn's Server-Sent Events) writes one ASGI body message per
upstream read: hundreds per answer. Each passed through every middleware's `send` wrapper (the
metrics' status recorder, CORS, the exception handlers' `response_started` flags: 7 Python calls
per message, ~1/4 of a paced token's calls on the event loop) although none of them looks at a body
message. `RawBodySend` is the outermost middleware of an application; when every middleware the
application was built with is known to pass body messages through unchanged (`BODY_TRANSPARENT`),
it puts the `send` it was given in the scope under `RAW_BODY_SEND`, and a response may send its body
messages there. Its start message still goes through the whole stack (headers added by CORS,
statuses recorded, `response_started` set), so the messages after it meet nothing that would act.

A middleware outside the list (GZip, a body rewriter, a byte counter added later) turns the short
way off for that application at build time; a mounted sub-application runs its own `RawBodySend`,
which removes the entry when its own middleware is not all transparent. Starlette's
ServerErrorMiddleware stays outside the user middleware, so what is kept here is its wrapped `send`.
What is checked is the applications' middleware; middleware given to a Router, Mount or Route
(`middleware=`) is not seen here, and Kiln gives none (a body-transforming one there would need
its response to send through the `send` it was given, as any response but the relay does).
"""

from __future__ import annotations

from typing import Any

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

RAW_BODY_SEND = "kiln.raw_body_send"

# Middleware classes whose `send` wrapper acts on `http.response.start` only (or that hand `send`
# on unchanged): a body message sent past them is what they would have sent.
BODY_TRANSPARENT: set[type] = {CORSMiddleware}


def body_transparent(cls: type) -> type:
    """Class decorator: `cls` never changes, drops, adds or counts an `http.response.body` message."""
    BODY_TRANSPARENT.add(cls)
    return cls


@body_transparent
class RawBodySend:
    """Add last (outermost) with `owner=` the application whose middleware it vouches for."""

    def __init__(self, app: ASGIApp, owner: Any, outermost: bool = True):
        self.app = app
        self.outermost = outermost
        # Built with the middleware stack, on the first request: `owner.user_middleware` is final
        # by then (Starlette refuses middleware added once the application has started).
        self.transparent = all(entry.cls in BODY_TRANSPARENT for entry in owner.user_middleware)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not self.transparent:
                scope.pop(RAW_BODY_SEND, None)
            elif self.outermost:
                scope[RAW_BODY_SEND] = send
        await self.app(scope, receive, send)
