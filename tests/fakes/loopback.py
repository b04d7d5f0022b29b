"""Serve a fake's request handler on a loopback port in a daemon thread (shared by the fakes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(handler: type[BaseHTTPRequestHandler], attrs: dict[str, Any], name: str) -> ThreadingHTTPServer:
    """Start a threaded server for a subclass of `handler` carrying `attrs` (e.g. the fake's state)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("BoundHandler", (handler,), attrs))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True).start()
    return server


@contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[None]:
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
