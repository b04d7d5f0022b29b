"""A loopback HTTP server speaking the SDNext / A1111 `/sdapi/v1` endpoints Kiln uses.

* ``POST /sdapi/v1/txt2img`` runs ``steps`` sampling steps of ``step_seconds`` each (one task
  at a time, like the real server's queue) and answers ``{"images": [base64 PNG], "parameters":
  {...}, "info": "<JSON string>"}``: ``info`` is a string, as SDNext really sends it. The task
  id is the request's ``force_task_id`` (or a generated one).
* ``GET /sdapi/v1/progress`` answers the server-global state with the running task's ``id``,
  ``progress`` 0..1, ``eta_relative``, ``state`` (``job_count``, ``sampling_step``,
  ``sampling_steps``, ``interrupted`` ...); idle is ``progress: 0`` with ``job_count: 0``.
* ``POST /sdapi/v1/interrupt`` (204) stops the running task: txt2img then returns at once with
  a partial image, as SDNext does.
* ``GET /sdapi/v1/options``, ``/version``, ``/loras``; ``POST /sdapi/v1/refresh-loras``.

``fake.fail_next(message)`` makes the next txt2img answer 500 with A1111's error body
(``{"error", "detail", "body", "errors"}``); ``fake.requests`` records (method, path, body).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from PIL import Image


def png_b64(width: int, height: int, shade: int) -> str:
    image = Image.new("RGB", (max(1, min(width, 256)), max(1, min(height, 256))), (shade % 256, 64, 128))
    out = io.BytesIO()
    image.save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


@dataclass
class FakeSDNext:
    url: str = ""
    step_seconds: float = 0.01
    checkpoint: str = "sdxl_base_1.0.safetensors"
    loras: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    interrupts: int = 0
    _failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queue: threading.Lock = field(default_factory=threading.Lock)
    _interrupt: threading.Event = field(default_factory=threading.Event)
    _state: dict[str, Any] = field(default_factory=dict)

    def fail_next(self, message: str) -> None:
        self._failures.append(message)

    def progress(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self._state)
        if not state:
            return {
                "id": None,
                "progress": 0,
                "eta_relative": 0,
                "textinfo": None,
                "current_image": None,
                "state": {
                    "skipped": False,
                    "interrupted": False,
                    "job": "",
                    "job_count": 0,
                    "job_timestamp": "0",
                    "job_no": 0,
                    "sampling_step": 0,
                    "sampling_steps": 0,
                },
            }
        step, steps = state["step"], state["steps"]
        return {
            "id": state["id"],
            "progress": round(step / steps, 4),
            "eta_relative": (steps - step) * self.step_seconds,
            "textinfo": f"Step {step}/{steps}",
            "current_image": None,
            "state": {
                "skipped": False,
                "interrupted": self._interrupt.is_set(),
                "job": "txt2img",
                "job_count": 1,
                "job_timestamp": "20260101000000",
                "job_no": 0,
                "sampling_step": step,
                "sampling_steps": steps,
            },
        }

    def txt2img(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._queue:
            if self._failures:
                return 500, {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": self._failures.pop(0)}
            task = str(body.get("force_task_id") or f"task({uuid.uuid4().hex[:15]})")
            steps = max(1, int(body.get("steps") or 20))
            self._interrupt.clear()
            with self._lock:
                self._state = {"id": task, "step": 0, "steps": steps}
            done = 0
            for done in range(1, steps + 1):
                if self._interrupt.wait(self.step_seconds):
                    break
                with self._lock:
                    self._state["step"] = done
            interrupted = self._interrupt.is_set()
            with self._lock:
                self._state = {}
            width, height = int(body.get("width") or 512), int(body.get("height") or 512)
            batch = max(1, int(body.get("batch_size") or 1)) * max(1, int(body.get("n_iter") or 1))
            count = 1 if interrupted else batch
            seed = body.get("seed") if isinstance(body.get("seed"), int) and body["seed"] >= 0 else 1234567
            info = {
                "prompt": body.get("prompt", ""),
                "all_prompts": [body.get("prompt", "")] * count,
                "negative_prompt": body.get("negative_prompt", ""),
                "seed": seed,
                "all_seeds": [seed] * count,
                "width": width,
                "height": height,
                "steps": steps,
                "sampler_name": body.get("sampler_name"),
                "cfg_scale": body.get("cfg_scale"),
                "sd_model_name": self.checkpoint.rsplit(".", 1)[0],
                "infotexts": [f"{body.get('prompt', '')}\nSteps: {done}, Seed: {seed}"] * count,
            }
            return 200, {
                "images": [png_b64(width, height, i * 40 + done) for i in range(count)],
                "parameters": body,
                "info": json.dumps(info),
            }


def _handler(fake: FakeSDNext) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes; without this, Nagle + delayed ACK add ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: Any = None) -> None:
            data = b"" if status == 204 else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            fake.requests.append(("GET", path, None))
            if path == "/sdapi/v1/progress":
                self._send(200, fake.progress())
            elif path == "/sdapi/v1/options":
                self._send(200, {"sd_model_checkpoint": fake.checkpoint, "samples_format": "png"})
            elif path == "/sdapi/v1/version":
                self._send(200, {"app": "sd.next", "updated": "2026-01-01", "version": "fake"})
            elif path == "/sdapi/v1/loras":
                self._send(200, fake.loras)
            else:
                self._send(404, {"detail": "Not Found"})

        def do_POST(self) -> None:
            path = urlparse(self.path).path
            body = self._body()
            fake.requests.append(("POST", path, body))
            if path == "/sdapi/v1/txt2img":
                self._send(*fake.txt2img(body or {}))
            elif path == "/sdapi/v1/interrupt":
                fake.interrupts += 1
                fake._interrupt.set()
                self._send(204)
            elif path == "/sdapi/v1/refresh-loras":
                self._send(200, None)
            else:
                self._send(404, {"detail": "Not Found"})

    return Handler


@pytest.fixture
def fake_sdnext() -> Iterator[FakeSDNext]:
    fake = FakeSDNext()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake._interrupt.set()
        server.shutdown()
        server.server_close()
        time.sleep(0)
