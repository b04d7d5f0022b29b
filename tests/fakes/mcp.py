"""A loopback MCP server (Streamable HTTP, JSON-RPC 2.0) with a `web_search` tool.

`initialize` assigns an `Mcp-Session-Id` (later requests without it get 400); `tools/list`,
`tools/call`. Search results come from `fake.pages` (title, url, text) matched on query words.
`fake.sse = True` answers requests as SSE streams instead of JSON; `fake.calls` records the
JSON-RPC messages.

    from tests.fakes.mcp import FakeMCP, fake_mcp  # noqa: F401  (fixture)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.fakes.loopback import running, serve

WEB_SEARCH = {
    "name": "web_search",
    "description": "Search the web.",
    "inputSchema": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "top_k": {"type": "integer"}},
        "required": ["query"],
    },
}


@dataclass
class FakeMCP:
    url: str = ""
    sse: bool = False
    pages: list[dict[str, str]] = field(
        default_factory=lambda: [
            {"title": "Kiln release notes", "url": "https://example.org/kiln", "text": "Kiln 2 ships agents."},
            {"title": "Bubblewrap", "url": "https://example.org/bwrap", "text": "bubblewrap sandboxes processes."},
        ]
    )
    calls: list[dict[str, Any]] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)

    def search(self, query: str, top_k: int) -> list[dict[str, Any]]:
        words = {w.lower() for w in query.split()}
        hits = [p for p in self.pages if words & set((p["title"] + " " + p["text"]).lower().replace(".", "").split())]
        return [
            {"title": p["title"], "url": p["url"], "snippet": p["text"], "rank": i + 1}
            for i, p in enumerate(hits[:top_k])
        ]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeMCP
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, kind: str = "application/json"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _reply(self, message: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        if self.fake.sse:
            body = b"event: message\ndata: " + json.dumps(message).encode() + b"\n\n"
            return self._send(200, body, headers, "text/event-stream")
        self._send(200, json.dumps(message).encode(), headers)

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            message = json.loads(raw)
        except ValueError:
            return self._send(400, b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse error"}}')
        self.fake.calls.append(message)
        method, mid = message.get("method"), message.get("id")
        if method == "initialize":
            sid = uuid.uuid4().hex
            self.fake.sessions.add(sid)
            return self._reply(
                {
                    "jsonrpc": "2.0",
                    "id": mid,
                    "result": {
                        "protocolVersion": message["params"]["protocolVersion"],
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "fake-mcp", "version": "1"},
                    },
                },
                {"Mcp-Session-Id": sid},
            )
        if self.headers.get("Mcp-Session-Id") not in self.fake.sessions:
            return self._send(400, b'{"jsonrpc":"2.0","error":{"code":-32600,"message":"no session"}}')
        if mid is None:  # a notification
            return self._send(202, b"")
        if method == "tools/list":
            return self._reply({"jsonrpc": "2.0", "id": mid, "result": {"tools": [WEB_SEARCH]}})
        if method == "tools/call":
            params = message.get("params") or {}
            if params.get("name") != "web_search":
                return self._reply(
                    {
                        "jsonrpc": "2.0",
                        "id": mid,
                        "error": {"code": -32602, "message": f"unknown tool {params.get('name')}"},
                    }
                )
            args = params.get("arguments") or {}
            results = self.fake.search(str(args.get("query", "")), int(args.get("top_k") or 3))
            payload = {"query": args.get("query"), "results": results}
            return self._reply(
                {
                    "jsonrpc": "2.0",
                    "id": mid,
                    "result": {
                        "content": [{"type": "text", "text": json.dumps(payload)}],
                        "structuredContent": payload,
                        "isError": False,
                    },
                }
            )
        self._reply({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "method not found"}})


@pytest.fixture
def fake_mcp() -> Iterator[FakeMCP]:
    fake = FakeMCP()
    server = serve(_Handler, {"fake": fake}, "fake-mcp")
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/mcp"
    with running(server):
        yield fake
