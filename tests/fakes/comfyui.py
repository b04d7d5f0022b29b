"""A loopback ComfyUI: `/prompt`, `/history[/{id}]`, `/view`, `/queue`, `/system_stats` and `/ws`.

A queued graph "executes" on a thread after `fake.delay` seconds: every `SaveImage` node yields a
real PNG (Pillow; its colour derives from the graph's seed and positive prompt, and the prompt is
stored in a PNG text chunk), every `SaveAudio` node a real WAV (stdlib `wave`). Files are named
from the node's `filename_prefix` as ComfyUI does (`<prefix>_00001_.png`, subfolder = the prefix's
directory). WebSocket clients registered with `?clientId=` receive `status`, `execution_start`,
`executing`, `progress`, `executed`, `executing {node: null}` and `execution_success` (or
`execution_error`). The socket is a minimal RFC 6455 server (text frames, ping/pong, close).

`fake.mode`: `"ok"`, `"error"` (execution fails), `"refuse"` (400 with node_errors), `"no_ws"`
(the upgrade is refused, so clients must poll). `fake.prompts` / `fake.views` record the calls.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import posixpath
import struct
import threading
import time
import uuid
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image, PngImagePlugin

from tests.fakes.loopback import running, serve

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SAVE_NODES = {"SaveImage": "images", "SaveAudio": "audio"}


@dataclass
class FakeComfyUI:
    url: str = ""
    mode: str = "ok"
    delay: float = 0.0
    prompts: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, str]] = field(default_factory=list)
    history: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    running: dict[str, list[Any]] = field(default_factory=dict)
    sockets: dict[str, list[Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0

    def send(self, client_id: str, kind: str, data: dict[str, Any]) -> None:
        frame = _frame(0x1, json.dumps({"type": kind, "data": data}).encode())
        for sock in list(self.sockets.get(client_id, [])):
            try:
                with sock[1]:
                    sock[0].write(frame)
                    sock[0].flush()
            except OSError:
                pass

    def execute(self, prompt_id: str, number: int, graph: dict[str, Any], client_id: str) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.send(client_id, "execution_start", {"prompt_id": prompt_id})
        outputs: dict[str, Any] = {}
        messages: list[Any] = [["execution_start", {"prompt_id": prompt_id}]]
        if self.mode == "error":
            node = next(iter(graph))
            error = {
                "prompt_id": prompt_id,
                "node_id": node,
                "node_type": graph[node]["class_type"],
                "exception_message": "CUDA out of memory",
                "exception_type": "torch.OutOfMemoryError",
            }
            messages.append(["execution_error", error])
            self.send(client_id, "execution_error", error)
            status = {"status_str": "error", "completed": False, "messages": messages}
        else:
            for node_id, node in graph.items():
                self.send(client_id, "executing", {"node": node_id, "prompt_id": prompt_id})
                kind = SAVE_NODES.get(node["class_type"])
                if kind is None:
                    continue
                self.send(client_id, "progress", {"value": 1, "max": 1, "prompt_id": prompt_id, "node": node_id})
                item = self.produce(graph, node, kind)
                outputs[node_id] = {kind: [item]}
                self.send(client_id, "executed", {"node": node_id, "output": outputs[node_id], "prompt_id": prompt_id})
            messages.append(["execution_success", {"prompt_id": prompt_id}])
            status = {"status_str": "success", "completed": True, "messages": messages}
        with self.lock:
            self.running.pop(prompt_id, None)
            self.history[prompt_id] = {
                "prompt": [number, prompt_id, graph, {"client_id": client_id}, list(outputs)],
                "outputs": outputs,
                "status": status,
                "meta": {},
            }
        if self.mode != "error":
            self.send(client_id, "executing", {"node": None, "prompt_id": prompt_id})
            self.send(client_id, "execution_success", {"prompt_id": prompt_id})

    def produce(self, graph: dict[str, Any], node: dict[str, Any], kind: str) -> dict[str, str]:
        seed = next((n["inputs"]["seed"] for n in graph.values() if "seed" in n.get("inputs", {})), 0)
        texts = [
            n["inputs"]["text"]
            for n in graph.values()
            if n["class_type"] == "CLIPTextEncode" and isinstance(n["inputs"].get("text"), str)
        ]
        positive = texts[0] if texts else ""
        digest = hashlib.sha256(f"{seed}|{positive}".encode()).digest()
        prefix = str(node["inputs"].get("filename_prefix") or "ComfyUI")
        subfolder, base = posixpath.split(prefix)
        with self.lock:
            self.counter += 1
            count = self.counter
        if kind == "images":
            latent = next((n["inputs"] for n in graph.values() if n["class_type"] == "EmptyLatentImage"), {})
            size = (max(8, int(latent.get("width", 512)) // 16), max(8, int(latent.get("height", 512)) // 16))
            info = PngImagePlugin.PngInfo()
            info.add_text("prompt", positive)
            info.add_text("seed", str(seed))
            buf = io.BytesIO()
            Image.new("RGB", size, tuple(digest[:3])).save(buf, "PNG", pnginfo=info)
            name = f"{base}_{count:05d}_.png"
        else:
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(1)
                w.setframerate(8000)
                w.writeframes(bytes(digest) * 25)
            name = f"{base}_{count:05d}_.wav"
        self.files[(name, subfolder, "output")] = buf.getvalue()
        return {"filename": name, "subfolder": subfolder, "type": "output"}


def _frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


class _Handler(BaseHTTPRequestHandler):
    fake: FakeComfyUI
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else delayed ACKs add ~40 ms per reply

    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "/ws":
            return self._websocket(query.get("clientId", ""))
        if path == "/system_stats":
            return self._json(200, {"system": {"comfyui_version": "fake"}, "devices": []})
        if path == "/queue":
            with self.fake.lock:
                running = list(self.fake.running.values())
            return self._json(200, {"queue_running": running, "queue_pending": []})
        if path == "/history":
            return self._json(200, self.fake.history)
        if path.startswith("/history/"):
            prompt_id = path.removeprefix("/history/")
            entry = self.fake.history.get(prompt_id)
            return self._json(200, {prompt_id: entry} if entry else {})
        if path == "/view":
            self.fake.views.append(query)
            key = (query.get("filename", ""), query.get("subfolder", ""), query.get("type", "output"))
            data = self.fake.files.get(key)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if key[0].endswith(".png") else "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/prompt":
            return self._json(404, {"error": "not found"})
        try:
            body = json.loads(raw)
            graph = body["prompt"]
            assert isinstance(graph, dict) and graph
            assert all(
                isinstance(n, dict) and "class_type" in n and isinstance(n.get("inputs"), dict) for n in graph.values()
            )
        except (ValueError, KeyError, AssertionError, TypeError):
            return self._json(
                400,
                {
                    "error": {
                        "type": "invalid_prompt",
                        "message": "Cannot execute because the prompt is not a valid graph",
                        "details": "",
                    },
                    "node_errors": {},
                },
            )
        client_id = str(body.get("client_id") or "")
        if self.fake.mode == "refuse" or not any(n["class_type"] in SAVE_NODES for n in graph.values()):
            node = next(iter(graph))
            return self._json(
                400,
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                    },
                    "node_errors": {
                        node: {
                            "errors": [{"type": "value_not_in_list", "message": "ckpt_name not in list"}],
                            "class_type": graph[node]["class_type"],
                        }
                    },
                },
            )
        prompt_id = str(uuid.uuid4())
        with self.fake.lock:
            number = len(self.fake.prompts)
            self.fake.prompts.append({"prompt_id": prompt_id, "graph": graph, "client_id": client_id})
            self.fake.running[prompt_id] = [number, prompt_id, graph, {"client_id": client_id}, []]
        self._json(200, {"prompt_id": prompt_id, "number": number, "node_errors": {}})
        threading.Thread(target=self.fake.execute, args=(prompt_id, number, graph, client_id), daemon=True).start()

    def _websocket(self, client_id: str) -> None:
        key = self.headers.get("Sec-WebSocket-Key")
        if self.fake.mode == "no_ws" or not key or "websocket" not in (self.headers.get("Upgrade") or "").lower():
            return self._json(404, {"error": "no websocket"})
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        entry = (self.wfile, threading.Lock())
        with entry[1]:  # registered before the client can see the socket open (no event is lost)
            self.fake.sockets.setdefault(client_id, []).append(entry)
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
        self.fake.send(client_id, "status", {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id})
        try:
            self._read_frames(entry)
        finally:
            self.fake.sockets[client_id].remove(entry)
            self.close_connection = True

    def _read_frames(self, entry: tuple[Any, threading.Lock]) -> None:
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            with entry[1]:
                if opcode == 0x8:
                    entry[0].write(_frame(0x8, payload[:2]))
                    entry[0].flush()
                    return
                if opcode == 0x9:
                    entry[0].write(_frame(0xA, payload))
                    entry[0].flush()


def start_fake_comfyui() -> tuple[FakeComfyUI, ThreadingHTTPServer]:
    fake = FakeComfyUI()
    server = serve(_Handler, {"fake": fake}, "fake-comfyui")
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return fake, server


@pytest.fixture
def fake_comfyui() -> Iterator[FakeComfyUI]:
    fake, server = start_fake_comfyui()
    with running(server):
        yield fake
