"""A Model Context Protocol client over Streamable HTTP (JSON-RPC 2.0), for agent tools.

`POST {url}` carries one JSON-RPC message; the server answers with JSON or with an SSE stream whose
`data:` lines hold the response. The session starts with `initialize` (the server may assign an
`Mcp-Session-Id`, echoed on every later request), then the `notifications/initialized`
notification; tools are listed with `tools/list` and run with `tools/call {name, arguments}`,
whose result is `{content: [{type: "text", text}...], structuredContent?, isError?}`.
Transport failures are `ProviderError`s (unreachable, timeout, offline-blocked); a JSON-RPC error
or a tool result with `isError` is an `MCPToolError`.
"""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import urlsplit

from kiln.providers.http import OfflineGuard, ProviderClient, ProviderError, ProviderProtocolError

PROTOCOL_VERSION = "2025-03-26"
MAX_RESULT_CHARS = 100_000


class MCPToolError(ProviderError):
    """The server refused the call or the tool reported an error."""


def _from_sse(text: str) -> list[dict[str, Any]]:
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
        if data:
            try:
                messages.append(json.loads(data))
            except ValueError:
                raise ProviderProtocolError("mcp", "SSE event data is not JSON") from None
    return messages


class MCPClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        api_key: str | None = None,
        offline_guard: OfflineGuard | None = None,
        origin: Any = None,
    ):
        parts = urlsplit(url)
        self.path = parts.path or "/"
        self.http = ProviderClient(
            f"{parts.scheme}://{parts.netloc}",
            name="mcp",
            timeout=timeout,
            api_key=api_key,
            max_retries=1,
            offline_guard=offline_guard,
            origin=origin,
            headers={"Accept": "application/json, text/event-stream"},
        )
        self._ids = itertools.count(1)
        self.session_id: str | None = None
        self.server_info: dict[str, Any] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> MCPClient:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
            headers["Mcp-Protocol-Version"] = PROTOCOL_VERSION
        return headers

    async def _send(self, method: str, params: dict[str, Any] | None = None, *, notify: bool = False) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notify:
            message["id"] = next(self._ids)
        response = await self.http.request("POST", self.path, json=message, headers=self._headers())
        if sid := response.headers.get("mcp-session-id"):
            self.session_id = sid
        if notify:
            return None
        kind = response.headers.get("content-type", "")
        if kind.startswith("text/event-stream"):
            replies = _from_sse(response.text)
        else:
            try:
                body = response.json()
            except ValueError:
                raise ProviderProtocolError("mcp", f"{method}: the answer is not JSON") from None
            replies = body if isinstance(body, list) else [body]
        reply = next((r for r in replies if isinstance(r, dict) and r.get("id") == message["id"]), None)
        if reply is None:
            raise ProviderProtocolError("mcp", f"{method}: no response with id {message['id']}")
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
            raise MCPToolError("mcp", f"{method}: {str(err.get('message'))[:300]}")
        return reply.get("result")

    async def initialize(self) -> dict[str, Any]:
        result = await self._send(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "kiln", "version": "1"}},
        )
        self.server_info = result if isinstance(result, dict) else {}
        await self._send("notifications/initialized", notify=True)
        return self.server_info

    async def list_tools(self) -> list[dict[str, Any]]:
        result = await self._send("tools/list", {})
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            raise ProviderProtocolError("mcp", "tools/list answer without a tools list")
        return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The tool's result: `text` (its text content joined), `structured` and the raw `content`."""
        result = await self._send("tools/call", {"name": name, "arguments": arguments})
        if not isinstance(result, dict):
            raise ProviderProtocolError("mcp", "tools/call answer is not an object")
        content = result.get("content") if isinstance(result.get("content"), list) else []
        text = "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict) and c.get("type") == "text")
        if result.get("isError"):
            raise MCPToolError("mcp", f"tool {name} failed: {text[:300]}")
        return {"text": text[:MAX_RESULT_CHARS], "structured": result.get("structuredContent"), "content": content}
