"""A loopback server speaking the OpenAI-compatible protocol, scriptable per test, recording calls.

Routes (under `/v1`, as Ollama, vLLM and llama.cpp serve them):
- `POST /v1/chat/completions` — JSON answer, or with `"stream": true` an SSE stream of
  `chat.completion.chunk` objects (chunked transfer encoding) ending in `data: [DONE]`;
- `POST /v1/embeddings` — one deterministic vector per input (hash of the text);
- `GET /v1/models` — `{"object":"list","data":[{"id":...}]}`.

What a chat call answers, first match wins: the next scripted reply (`fake.script(...)`), else
`fake.responder(request_json)`, else an echo of the last user message. A reply is a string
(the content) or a `Reply` (status, raw body, delay, headers, stream pieces, a mid-stream error).
`fake.calls` records every request: method, path, headers, parsed JSON body.

    from tests.fakes.openai_llm import FakeLLM, Reply, fake_llm  # noqa: F401  (fixture)
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fakes.loopback import running, serve


@dataclass
class Reply:
    content: str = ""
    status: int = 200
    body: bytes | None = None  # raw body instead of the protocol answer (for error/garbage tests)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    pieces: list[str] | None = None  # stream pieces; default: content split after spaces
    stream_error: str | None = None  # send an error chunk after the pieces
    model: str | None = None
    finish_reason: str = "stop"
    piece_delay: float = 0.0  # seconds between stream pieces (a model still generating)
    tool_calls: list[dict[str, Any]] | None = None  # [{"name": ..., "arguments": {...}}] → an assistant tool call


@dataclass
class FakeLLM:
    url: str = ""  # base URL, ends in /v1
    models: list[str] = field(default_factory=lambda: ["fake-chat", "fake-embed"])
    dimensions: int = 8
    responder: Callable[[dict[str, Any]], str | Reply] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    _queue: deque[str | Reply] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *replies: str | Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def next_reply(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        reply = scripted if scripted is not None else (self.responder(request) if self.responder else None)
        if reply is None:
            users = [m for m in request.get("messages", []) if m.get("role") == "user"]
            reply = str(users[-1].get("content", "")) if users else ""
        return Reply(content=reply) if isinstance(reply, str) else reply

    @property
    def chat_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["path"].endswith("/chat/completions")]

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
        self.calls.clear()
        self.responder = None


def vector_for(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLM
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else delayed ACKs add ~40 ms per reply

    def log_message(self, *args: object) -> None:
        pass

    def _send(
        self, status: int, payload: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _record(self, body: dict[str, Any] | None) -> None:
        self.fake.calls.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "json": body})

    def do_GET(self) -> None:  # noqa: N802
        self._record(None)
        if self.path.rstrip("/") != "/v1/models":
            return self._send(404, b'{"error":{"message":"not found"}}')
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.fake.models]
        self._send(200, json.dumps({"object": "list", "data": data}).encode())

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._record(None)
            return self._send(400, b'{"error":{"message":"body is not JSON"}}')
        self._record(body)
        if self.path == "/v1/embeddings":
            return self._embeddings(body)
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error":{"message":"not found"}}')
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return self._send(400, b'{"error":{"message":"model and messages are required"}}')
        reply = self.fake.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.body is not None or reply.status != 200:
            payload = (
                reply.body
                if reply.body is not None
                else json.dumps({"error": {"message": reply.content or "error", "type": "server_error"}}).encode()
            )
            return self._send(reply.status, payload, headers=reply.headers)
        model = reply.model or body["model"]
        if body.get("stream"):
            return self._stream(reply, model)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        finish = reply.finish_reason
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments", {}))},
                }
                for i, call in enumerate(reply.tool_calls)
            ]
            message["content"] = reply.content or None
            finish = "tool_calls"
        answer = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": max(1, len(reply.content.split())),
                "total_tokens": 1 + max(1, len(reply.content.split())),
            },
        }
        self._send(200, json.dumps(answer).encode(), headers=reply.headers)

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not body.get("model"):
            return self._send(400, b'{"error":{"message":"model and input are required"}}')
        data = [
            {"object": "embedding", "index": i, "embedding": vector_for(str(t), self.fake.dimensions)}
            for i, t in enumerate(inputs)
        ]
        self._send(
            200,
            json.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body["model"],
                    "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
                }
            ).encode(),
        )

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, reply: Reply, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = reply.pieces if reply.pieces is not None else [w + " " for w in reply.content.split(" ")]
        if reply.pieces is None and pieces:
            pieces[-1] = pieces[-1][:-1]

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        self._chunk(event({"role": "assistant", "content": ""}))
        for piece in pieces:
            if reply.piece_delay:
                time.sleep(reply.piece_delay)
            try:
                self._chunk(event({"content": piece}))
            except OSError:  # the client went away mid-stream
                return
        if reply.stream_error:
            self._chunk(b"data: " + json.dumps({"error": {"message": reply.stream_error}}).encode() + b"\n\n")
        else:
            self._chunk(event({}, reply.finish_reason))
            self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def start_fake_llm() -> tuple[FakeLLM, ThreadingHTTPServer]:
    fake = FakeLLM()
    server = serve(_Handler, {"fake": fake}, "fake-openai")
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    return fake, server


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    fake, server = start_fake_llm()
    with running(server):
        yield fake
