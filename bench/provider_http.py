"""CPU per outgoing call of `ProviderClient` (Kiln's provider HTTP client) against a loopback server.

The server is a minimal keep-alive HTTP/1.1 responder in its own process (so its work is not
counted); the client runs N sequential calls on uvloop (as `kiln serve` does) and the figure is
the client process's CPU time (user + system) per call, after a warm-up.

    PYTHONPATH=src:. .venv/bin/python bench/provider_http.py [--calls 3000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

import uvloop  # noqa: E402

from kiln.providers.http import ProviderClient  # noqa: E402

SERVER = r"""
import asyncio, sys, uvloop
BODY = b'{"choices":[{"message":{"role":"assistant","content":"SAFE"},"finish_reason":"stop"}],"model":"m"}'
RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
class Responder(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].lower().split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(RESP)
async def main():
    server = await asyncio.get_running_loop().create_server(Responder, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
uvloop.run(main())
"""
BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are the safety check"},
        {"role": "user", "content": "Ein Hund spielt im Garten"},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def per_call(url: str, calls: int) -> float:
    async with ProviderClient(url, name="bench") as http:
        for _ in range(200):
            await http.json("POST", "/chat/completions", json=BODY)
        start = time.process_time()
        for _ in range(calls):
            await http.json("POST", "/chat/completions", json=BODY)
        return (time.process_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        figures = [uvloop.run(per_call(f"http://127.0.0.1:{port}/v1", args.calls)) for _ in range(args.repeat)]
        print("CPU per POST+JSON call: " + " / ".join(f"{f * 1e6:.0f} µs" for f in figures))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
