"""A loopback detector service speaking the HttpDetector protocol, for tests.

``POST /detect`` with multipart field ``file`` (an image). It decodes the image with Pillow and
answers ``{"detections": [...]}`` built from what is really in the picture: one detection per
pure-red region (label ``"plastic"``) with its bounding box, confidence = share of red pixels
in that box. So a test can draw a red rectangle and check the box that comes back.

``service.mode`` switches to misbehaviour: ``"error"`` (503), ``"garbage"`` (200, not JSON),
``"bad-shape"`` (200, JSON without a detections list). ``service.received`` records each
request's content type and field names.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image


@dataclass
class FakeDetectorService:
    url: str = ""
    mode: str = "ok"
    received: list[dict[str, object]] = field(default_factory=list)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


def red_boxes(image: Image.Image) -> list[dict[str, object]]:
    """Bounding box of the red pixels, split into left-right separated groups by empty columns."""
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    red = (arr[..., 0] > 180) & (arr[..., 1] < 80) & (arr[..., 2] < 80)
    cols = red.any(axis=0)
    out = []
    x = 0
    while x < len(cols):
        if not cols[x]:
            x += 1
            continue
        start = x
        while x < len(cols) and cols[x]:
            x += 1
        rows = np.where(red[:, start:x].any(axis=1))[0]
        y1, y2 = int(rows[0]), int(rows[-1]) + 1
        share = float(red[y1:y2, start:x].mean())
        out.append({"label": "plastic", "confidence": round(share, 4), "bbox": [start, y1, x, y2]})
    return out


class _Handler(BaseHTTPRequestHandler):
    service: FakeDetectorService
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type") or ""
        fields = _parse_multipart(content_type, body) if content_type.startswith("multipart/") else {}
        self.service.received.append({"content_type": content_type, "fields": sorted(fields)})
        if self.path != "/detect":
            return self._send(404, b'{"detail":"Not Found"}')
        mode = self.service.mode
        if mode == "error":
            return self._send(503, b'{"detail":"overloaded"}')
        if mode == "garbage":
            return self._send(200, b"<html>oops</html>", "text/html")
        if mode == "bad-shape":
            return self._send(200, b'{"boxes": []}')
        if "file" not in fields:
            return self._send(422, b'{"detail":"field file is required"}')
        try:
            image = Image.open(io.BytesIO(fields["file"]))
            image.load()
        except Exception:  # noqa: BLE001
            return self._send(400, b'{"detail":"not an image"}')
        self._send(200, json.dumps({"detections": red_boxes(image)}).encode())


@pytest.fixture
def fake_detector() -> Iterator[FakeDetectorService]:
    service = FakeDetectorService()
    handler = type("BoundHandler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    service.url = f"http://127.0.0.1:{server.server_address[1]}/detect"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-detector", daemon=True
    ).start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
