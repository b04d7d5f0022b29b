"""Kiln's gateway overhead on `POST /v1/models/inference` against an instant OpenAI-compatible server.

Two processes on loopback: an instant fake OpenAI server (raw asyncio HTTP/1.1, fixed answer) and
`kiln serve` (uvicorn, the app it runs, genai only, SQLite under a temporary KILN_HOME or
PostgreSQL with --pg). Kiln is set up through its API: bootstrap superadmin, a local platform
model on the `llm-local` provider (KILN_LLM_URL), tested, validated, activated, bound in the
active deployment; a plain user calls inference. Each round sends one direct chat call to the fake
and one Kiln inference call (interleaved, so both see the same noise), sequentially from one
keep-alive client. Overhead = Kiln latency - direct latency, reported as p50/p95 of each and the
difference. Goal: p50 < 3 ms, p95 < 10 ms (LiteLLM's published proxy overhead: 2-12 ms median). For
reference each round also times Kiln's public no-op `GET /v1/system/ping` (the HTTP floor of the
server: uvicorn, middleware, routing; no auth, no database).

    .venv/bin/python bench/genai_gateway.py [--requests 1000] [--warmup 100] [--pg] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Bench-horse-9"
ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "bench-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
).encode()
MODELS = json.dumps({"object": "list", "data": [{"id": "bench-chat", "object": "model"}]}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- instant fake (own process)


async def _fake_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            body = MODELS if head.startswith(b"GET") else ANSWER
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def wait_listening(url: str) -> None:
    """Until something accepts connections at `url` (a server process still starting)."""
    parts = urlsplit(url)
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"nothing listens at {url}")


def fake_main(port: int, handler: Any = None) -> None:
    async def run() -> None:
        server = await asyncio.start_server(handler or _fake_conn, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def serve_main() -> None:
    import uvicorn

    from kiln.app import create_app
    from kiln.settings import Settings

    settings = Settings()
    app = create_app(settings, migrate=True)
    profile = os.environ.get("BENCH_PROFILE")
    if not profile:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
        return
    import cProfile
    import signal

    # uvicorn re-raises the SIGTERM it caught once it has shut down; a no-op handler lets run() return.
    signal.signal(signal.SIGTERM, lambda *_: None)
    profiler = cProfile.Profile()  # the whole server run; setup requests are few beside the measured ones
    profiler.enable()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        profiler.disable()
        profiler.dump_stats(profile)


@dataclass
class Servers:
    base: str
    """Kiln's base URL."""
    fake: str
    """The fake's OpenAI base URL (`.../v1`)."""
    kiln_pid: int
    home: Path
    """Kiln's KILN_HOME."""
    database_url: str
    """The database Kiln serves from."""

    def kiln_cpu(self) -> float:
        """CPU seconds (user + system) the Kiln process has used so far."""
        times = psutil.Process(self.kiln_pid).cpu_times()
        return times.user + times.system


@asynccontextmanager
async def processes(database_url: str | None, fake_script: str | None = None, profile: str | None = None) -> Any:
    """The fake (this file's, or `fake_script --fake PORT`) and `kiln serve`, both on loopback.

    With `profile`, Kiln runs under cProfile and writes its stats there when it stops."""
    import httpx

    fake_port, kiln_port = free_port(), free_port()
    home = Path(tempfile.mkdtemp(prefix="kiln-bench-genai-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "KILN_HOME": str(home),
        "KILN_PORT": str(kiln_port),
        "KILN_HOST": "127.0.0.1",
        "KILN_APPS": "genai",
        "KILN_LOG_LEVEL": "warning",
        "KILN_LLM_URL": f"http://127.0.0.1:{fake_port}/v1",
        "KILN_BOOTSTRAP_SUPERADMIN_EMAIL": "root@example.com",
        "KILN_BOOTSTRAP_SUPERADMIN_PASSWORD": PASSWORD,
    }
    if database_url:
        env["KILN_DATABASE_URL"] = database_url
    if profile:
        env["BENCH_PROFILE"] = str(Path(profile).resolve())
    procs = [
        subprocess.Popen([sys.executable, fake_script or __file__, "--fake", str(fake_port)], env=env),
        subprocess.Popen([sys.executable, __file__, "--serve"], env=env, cwd=str(home)),
    ]
    base = f"http://127.0.0.1:{kiln_port}"
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as probe:
            while True:
                if procs[1].poll() is not None:
                    raise SystemExit(f"kiln exited with {procs[1].returncode}")
                with suppress(httpx.HTTPError):
                    if (await probe.get(base + "/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit("kiln did not become ready")
                await asyncio.sleep(0.2)
        yield Servers(
            base,
            f"http://127.0.0.1:{fake_port}/v1",
            procs[1].pid,
            home,
            database_url or f"sqlite+aiosqlite:///{home / 'kiln.db'}",
        )
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def setup(client: Any) -> dict[str, str]:
    async def login(identifier: str) -> dict[str, str]:
        r = await client.post("/auth/login", json={"identifier": identifier, "password": PASSWORD})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def ok(r: Any) -> Any:
        if r.status_code >= 400:
            raise SystemExit(f"setup failed: {r.request.method} {r.request.url.path} -> {r.status_code} {r.text}")
        return r.json()

    sa = await login("root@example.com")
    model = {
        "id": "bench-local",
        "name": "Bench",
        "backend": "local",
        "task_key": "llm",
        "provider_model_id": "bench-chat",
    }
    ok(await client.post("/v1/modelops/models", json=model, headers=sa))
    run = ok(await client.post("/v1/modelops/models/bench-local/test", json={"inputs": {"prompt": "hi"}}, headers=sa))[
        "test_run"
    ]
    ok(await client.post("/v1/modelops/models/bench-local/validate", json={"test_run_id": run["id"]}, headers=sa))
    ok(await client.post("/v1/modelops/models/bench-local/activate", headers=sa))
    deployment = next(
        d for d in ok(await client.get("/v1/platform/deployments", headers=sa))["deployments"] if d["is_active"]
    )
    llm = next(b for b in deployment["bindings"] if b["capability"] == "llm_inference")
    ok(
        await client.put(
            f"/v1/platform/deployments/{deployment['id']}/bindings/llm_inference",
            headers=sa,
            json={
                "provider_id": llm["provider"]["id"],
                "resources": [{"managed_model_id": "bench-local"}],
                "default_resource_id": "bench-local",
            },
        )
    )
    email = f"user-{uuid.uuid4().hex[:6]}@example.com"
    ok(
        await client.post(
            "/auth/register",
            headers=sa,
            json={"email": email, "username": email.split("@")[0], "password": PASSWORD, "is_active": True},
        )
    )
    return await login(email)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(args: argparse.Namespace) -> None:
    import httpx

    db = None
    if args.pg:
        import asyncpg

        name = f"kiln_bench_genai_{uuid.uuid4().hex[:6]}"
        admin = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        db = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    try:
        async with (
            processes(db, profile=args.profile) as servers,
            httpx.AsyncClient(base_url=servers.base, timeout=30) as kiln,
            httpx.AsyncClient(timeout=30) as direct,
        ):
            user = await setup(kiln)
            body = {"model": "bench-local", "prompt": "hello"}
            chat = {"model": "bench-chat", "messages": [{"role": "user", "content": "hello"}]}
            direct_ms: list[float] = []
            kiln_ms: list[float] = []
            floor_ms: list[float] = []
            for i in range(args.warmup + args.requests):
                t0 = time.perf_counter()
                r = await direct.post(servers.fake + "/chat/completions", json=chat)
                t1 = time.perf_counter()
                k = await kiln.post("/v1/models/inference", json=body, headers=user)
                t2 = time.perf_counter()
                p = await kiln.get("/v1/system/ping")
                t3 = time.perf_counter()
                if p.status_code != 200 or r.status_code != 200 or k.status_code != 200 or k.json()["output"] != "ok":
                    raise SystemExit(f"bad answer: {r.status_code} {k.status_code} {k.text[:200]}")
                if i >= args.warmup:
                    direct_ms.append((t1 - t0) * 1000)
                    kiln_ms.append((t2 - t1) * 1000)
                    floor_ms.append((t3 - t2) * 1000)
            # CPU of the Kiln process per request (wall-clock-free, so it means something on a busy machine)
            cpu: dict[str, float] = {}
            for label, send in (
                ("inference", lambda: kiln.post("/v1/models/inference", json=body, headers=user)),
                ("no-op route", lambda: kiln.get("/v1/system/ping")),
            ):
                before = servers.kiln_cpu()
                for _ in range(args.requests):
                    (await send()).raise_for_status()
                cpu[label] = (servers.kiln_cpu() - before) / args.requests * 1000
    finally:
        if db:
            import asyncpg

            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()
    overhead = [k - d for k, d in zip(kiln_ms, direct_ms, strict=True)]
    backend = "postgresql" if args.pg else "sqlite"
    print(f"genai gateway overhead, {args.requests} sequential calls, {backend}")
    rows = (
        ("direct (baseline)", direct_ms),
        ("via Kiln", kiln_ms),
        ("overhead", overhead),
        ("Kiln no-op route", floor_ms),
    )
    for label, values in rows:
        print(
            f"  {label:18s} p50 {pct(values, 0.5):7.2f} ms  p95 {pct(values, 0.95):7.2f} ms  "
            f"mean {statistics.fmean(values):7.2f} ms"
        )
    p50 = pct(kiln_ms, 0.5) - pct(direct_ms, 0.5)
    p95 = pct(kiln_ms, 0.95) - pct(direct_ms, 0.95)
    print(
        f"  Kiln minus direct: p50 {p50:.2f} ms (goal < 3), p95 {p95:.2f} ms (goal < 10); "
        f"ratio Kiln/direct p50 {pct(kiln_ms, 0.5) / pct(direct_ms, 0.5):.1f}x"
    )
    print(
        f"  Kiln process CPU per request: inference {cpu['inference']:.2f} ms, no-op route {cpu['no-op route']:.2f} ms "
        f"(ratio {cpu['inference'] / cpu['no-op route']:.1f}x)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_main()
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--fake":
        fake_main(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--profile", metavar="FILE", help="run Kiln under cProfile and write its stats to FILE")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
