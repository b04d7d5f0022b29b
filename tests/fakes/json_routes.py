"""A JSON-over-HTTP loopback server base for the fakes: a handler class whose `route(method, path,
body)` answers `(status, json_or_None)`, served on 127.0.0.1 on a free port."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Route = Callable[[str, str, Any], tuple[int, Any]]


def handler_for(route: Route) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            status, answer = route(method, self.path.split("?")[0], body)
            raw = b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

    return Handler


@contextmanager
def serve(route: Route) -> Iterator[str]:
    """The server's base URL while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(route))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
