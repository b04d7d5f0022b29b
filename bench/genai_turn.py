"""CPU of one streamed playground turn inside Kiln, without the sockets' and the client's noise.

In-process: the app of `create_app` (genai only, SQLite under a temporary KILN_HOME, or PostgreSQL
with --pg URL) driven through its ASGI callable, as uvicorn would (`POST
/v1/playgrounds/sessions/{id}/messages/stream`, one turn at a time, a fresh session per turn so the
history does not grow); the model is bench/genai_chat.py's streaming fake in its own process, so its
CPU is not counted. Per turn: CPU (process_time, every thread of this process: the event loop and
the database driver's) from the request to the first `delta` write and to the end of the response
(persistence included), SQL statements before the first `delta` and in the whole turn, and the
Python function calls on the event loop's thread (exact; the machine's load does not move it).
Sections: a 5-token answer (what bench/genai_chat.py's TTFT section asks) and a 400-token answer
paced 1 ms/token (its relay section); per paced token = (400-token turn - 5-token turn) / 395.

    PYTHONPATH=src:. .venv/bin/python bench/genai_turn.py [--turns 300] [--pg URL] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "bench")]

import httpx  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402
from genai_gateway import PASSWORD, free_port, setup, wait_listening  # noqa: E402
from sqlalchemy import event  # noqa: E402

from kiln.app import create_app  # noqa: E402
from kiln.core.migrations import upgrade  # noqa: E402
from kiln.providers import http1  # noqa: E402
from kiln.settings import Settings  # noqa: E402


class Turn:
    """One streamed turn through the ASGI callable, with its CPU and statement stamps."""

    def __init__(
        self, app: Any, statements: list[int], upstream: list[float | None], session_id: str, auth: bytes, prompt: str
    ) -> None:
        self.app, self.statements, self.upstream = app, statements, upstream
        body = json.dumps({"prompt": prompt}).encode()
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": f"/v1/playgrounds/sessions/{session_id}/messages/stream",
            "raw_path": f"/v1/playgrounds/sessions/{session_id}/messages/stream".encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"127.0.0.1:8000"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"authorization", auth),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        self.body = body
        self.first_cpu = self.first_sql = None
        self.deltas = 0
        self.complete = False
        self.ended = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self.ended.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if message["status"] != 200:
                raise SystemExit(f"stream refused: {message['status']}")
            return
        chunk = message.get("body", b"")
        if b"event: delta" in chunk:
            if self.first_cpu is None:
                self.first_cpu, self.first_sql = time.process_time(), self.statements[0]
            self.deltas += chunk.count(b"event: delta")
        self.complete = self.complete or b"event: complete" in chunk
        if not message.get("more_body", False):
            self.ended.set()

    async def run(self) -> tuple[float, float, int, int, float]:
        """(CPU ms to the first delta, CPU ms of the whole turn, statements before the first delta,
        statements, CPU ms to the upstream request)."""
        self.upstream[0] = None
        sql0, cpu0 = self.statements[0], time.process_time()
        await self.app(self.scope, self.receive, self.send)
        cpu1 = time.process_time()
        if not self.complete or self.first_cpu is None or self.upstream[0] is None:
            raise SystemExit("turn did not complete")
        return (
            (self.first_cpu - cpu0) * 1000,
            (cpu1 - cpu0) * 1000,
            self.first_sql - sql0,
            self.statements[0] - sql0,
            (self.upstream[0] - cpu0) * 1000,
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=300, help="5-token turns measured (paced: a tenth)")
    parser.add_argument("--pg", metavar="URL", help="postgresql+asyncpg:// URL of an empty, migratable database")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the measured turns")
    parser.add_argument("--paced-profile", action="store_true", help="profile the paced turns, not the 5-token ones")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kiln-turn-"))
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, str(ROOT / "bench" / "genai_chat.py"), "--fake", str(fake_port)])
    url = args.pg or f"sqlite+aiosqlite:///{home / 'kiln.db'}"
    os.environ.update(
        KILN_APPS="genai",
        KILN_LLM_URL=f"http://127.0.0.1:{fake_port}/v1",
        KILN_BOOTSTRAP_SUPERADMIN_EMAIL="root@example.com",
        KILN_BOOTSTRAP_SUPERADMIN_PASSWORD=PASSWORD,
        KILN_LOG_LEVEL="warning",
    )
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(_env_file=None, home=home, database_url=url, broker_url="memory://")  # type: ignore[call-arg]
        app = create_app(settings, migrate=False)
        async with (
            LifespanManager(app, startup_timeout=60),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as client,
        ):
            await wait_listening(f"http://127.0.0.1:{fake_port}")  # slow to start on a loaded machine
            user = await setup(client)
            auth = user["Authorization"].encode()
            statements = [0]

            def count(*_: Any) -> None:
                statements[0] += 1

            event.listen(app.state.kernel.db.engine.sync_engine, "before_cursor_execute", count)
            upstream: list[float | None] = [None]  # CPU stamp of the turn's upstream request
            pool_send = http1.Pool.send

            async def noting_send(self: Any, *args: Any) -> Any:
                if upstream[0] is None:
                    upstream[0] = time.process_time()
                return await pool_send(self, *args)

            http1.Pool.send = noting_send  # type: ignore[method-assign]

            async def sessions(n: int) -> list[str]:
                out = []
                for _ in range(n):
                    r = await client.post(
                        "/v1/playgrounds/sessions",
                        headers=user,
                        json={"playground_kind": "chat", "model_selection": {"model_id": "bench-local"}},
                    )
                    out.append(r.json()["session"]["id"])
                return out

            async def turns(prompt: str, n: int, profiler: cProfile.Profile | None = None) -> list[tuple]:
                ids = await sessions(n)
                out = []
                for sid in ids:
                    if profiler:
                        profiler.enable()
                    out.append(await Turn(app, statements, upstream, sid, auth, prompt).run())
                    if profiler:
                        profiler.disable()
                return out

            async def calls_per_turn(prompt: str, n: int) -> float:
                ids = await sessions(n)
                calls = 0

                def profile(_frame: Any, kind: str, _arg: Any) -> None:
                    nonlocal calls
                    if kind == "call":
                        calls += 1

                for sid in ids:
                    sys.setprofile(profile)
                    try:
                        await Turn(app, statements, upstream, sid, auth, prompt).run()
                    finally:
                        sys.setprofile(None)
                return calls / n

            short, paced = "tokens=5 gap_ms=0 ttft_ms=0", "tokens=400 gap_ms=1 ttft_ms=0"
            await turns(short, 20)  # warm-up: caches, pools, the upstream connection
            profiler = cProfile.Profile(time.thread_time) if args.profile else None  # CPU of this thread, not wall
            s = await turns(short, args.turns, None if args.paced_profile else profiler)
            p = await turns(paced, max(10, args.turns // 10), profiler if args.paced_profile else None)
            short_calls = await calls_per_turn(short, 50)
            paced_calls = await calls_per_turn(paced, 5)

            def med(rows: list[tuple], i: int) -> float:
                return statistics.median(r[i] for r in rows)

            print(
                f"genai streamed turn, in-process, {'postgresql' if args.pg else 'sqlite'};"
                f" load {os.getloadavg()[0]:.1f}"
            )
            print(
                f"  5-token turn ({args.turns}), p50 CPU to first delta {med(s, 0):6.2f} ms,"
                f" whole turn {med(s, 1):6.2f} ms"
            )
            print(f"    p50 CPU to the upstream request {med(s, 4):6.2f} ms")
            print(f"    SQL statements before the first delta {med(s, 2):.0f}, whole turn {med(s, 3):.0f}")
            print(f"    Python calls per turn (event loop thread) {short_calls:.0f}")
            print(f"  400-token turn paced 1 ms ({len(p)}), p50 CPU whole turn {med(p, 1):6.2f} ms")
            print(
                f"    per paced token {(med(p, 1) - med(s, 1)) / 395 * 1000:.1f} us CPU, "
                f"{(paced_calls - short_calls) / 395:.1f} Python calls"
            )
            if profiler:
                profiler.dump_stats(args.profile)
                pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)
    finally:
        fake.terminate()
        fake.wait()


if __name__ == "__main__":
    try:  # the loop uvicorn runs on
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
