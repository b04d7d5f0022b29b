"""Network-facing safety that every surface inherits: the Host header check and secret-free access logs."""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.core.body_send import body_transparent
from kiln.settings import is_loopback_host


def _host_name(header: str) -> str:
    """`example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def _allowed(name: str, patterns: tuple[str, ...]) -> bool:
    name = name.rstrip(".")
    if is_loopback_host(name):
        return True
    for pattern in patterns:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def host_allowed(settings: Any, header: str | None) -> bool:
    """Listening on loopback, only loopback names and `KILN_ALLOWED_HOSTS` are answered (no DNS
    rebinding); listening elsewhere, any Host unless `KILN_ALLOWED_HOSTS` names some."""
    # Decided once per (listen address, allowed names, Host header): parsing the addresses was
    # most of the check's cost, and a client sends the same Host on every request.
    return _host_allowed(settings.host, tuple(settings.allowed_hosts), header)


@lru_cache(maxsize=1024)
def _host_allowed(listen_host: str, patterns: tuple[str, ...], header: str | None) -> bool:
    if not is_loopback_host(listen_host) and not patterns:
        return True
    if not header:
        return False
    return _allowed(_host_name(header), patterns)


@body_transparent  # hands `send` on unchanged (or answers by itself)
class HostGuardMiddleware:
    """Refuses requests whose Host header is not served here (400; a WebSocket is closed with 1008)."""

    def __init__(self, app: ASGIApp, settings: Any) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = None
        for key, value in scope.get("headers", ()):
            if key == b"host":
                host = value.decode("latin-1")
                break
        if host_allowed(self.settings, host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "Host not allowed"})
            return
        body = json.dumps(
            {
                "detail": "Host header not served here; use a loopback address such as "
                "127.0.0.1, or add the name to KILN_ALLOWED_HOSTS"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


SECRET_PARAM = re.compile(r"(?i)([?&;](?:[a-z0-9_.-]*token|api[_-]?key|password|passwd|secret)=)[^&;\s\"']*")
REDACTED = "[REDACTED]"


def redact_secrets(text: str) -> str:
    """Replace the values of token / api_key / password query parameters in a path or a log line."""
    return SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


class SecretRedactingFilter(logging.Filter):
    """Redacts secret query parameters from log records (uvicorn puts the path with its query string
    in the arguments of its access and WebSocket lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = redact_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_secrets(a) if isinstance(a, str) and "=" in a else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact_secrets(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


LOGGERS_WITH_PATHS = ("uvicorn.access", "uvicorn.error", "uvicorn", "gunicorn.access")


def install_log_redaction() -> None:
    """Idempotent: put the redacting filter on the loggers that write request paths."""
    for name in LOGGERS_WITH_PATHS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretRedactingFilter) for f in logger.filters):
            logger.addFilter(SecretRedactingFilter())
