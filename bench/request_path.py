"""CPU per request of the engine's own path: routing, middleware, auth and request dependencies.

In-process (no sockets, no uvicorn): the app of `create_app` with every surface, on SQLite under a
temporary KILN_HOME (or PostgreSQL with --pg URL), driven through its ASGI callable. For each probe
it runs N requests sequentially and reports CPU microseconds per request (process_time), the SQL
statements per request, and the Python function calls per request on the event loop's thread (a
count the machine's load does not change, unlike time; the database driver's threads are not in
it). Probes: a public route, authenticated GETs of genai and media (login JWT), an API-token
request, arted (last in KILN_APPS order, so root dispatch tries every other surface first) and an
unknown path.

    .venv/bin/python bench/request_path.py [--requests 2000] [--pg URL] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from asgi_lifespan import LifespanManager  # noqa: E402
from sqlalchemy import event  # noqa: E402

from kiln.app import create_app  # noqa: E402
from kiln.core.auth import create_api_token, create_user, issue_token_for  # noqa: E402
from kiln.core.migrations import upgrade  # noqa: E402
from kiln.settings import Settings  # noqa: E402


async def call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One request through the app's ASGI callable; returns the status."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


CALL_COUNT_REQUESTS = 200


async def count_calls(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> float:
    """Python function calls per request on this thread."""
    calls = 0

    def profile(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        for _ in range(CALL_COUNT_REQUESTS):
            await call(app, method, path, headers)
    finally:
        sys.setprofile(None)
    return calls / CALL_COUNT_REQUESTS


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pg", metavar="URL", help="postgresql+asyncpg:// URL of an empty, migratable database")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the timed requests")
    parser.add_argument("--only", metavar="TEXT", help="run only the probes whose label contains TEXT")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kiln-reqpath-"))
    url = args.pg or f"sqlite+aiosqlite:///{home / 'kiln.db'}"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(_env_file=None, home=home, database_url=url, broker_url="memory://")  # type: ignore[call-arg]
    app = create_app(settings, migrate=False)
    async with LifespanManager(app, startup_timeout=60):
        kernel = app.state.kernel
        async with kernel.db.session() as session:
            user = await create_user(session, "bench@reqpath.test", "Bench-horse-9", role="admin")
            _token, api_token = await create_api_token(session, user, "bench")
            await session.commit()
        jwt = issue_token_for(settings, user).token
        bearer = [(b"authorization", f"Bearer {jwt}".encode())]
        cookie = [(b"cookie", f"access_token={jwt}".encode())]
        api = [(b"authorization", f"Bearer {api_token}".encode())]
        probes = [
            ("genai public ping", "GET", "/v1/system/ping", []),
            ("genai /v1/auth/me (JWT)", "GET", "/v1/auth/me", bearer),
            ("genai /v1/auth/me (API token)", "GET", "/v1/auth/me", api),
            ("genai /genai/v1/auth/me (prefix)", "GET", "/genai/v1/auth/me", bearer),
            ("media recents (cookie JWT)", "GET", "/api/upload/recents", cookie),
            ("arted schema list (last surface)", "GET", "/api/schema/list", []),
            ("unknown path (404)", "GET", "/no/such/path", []),
        ]
        statements = 0

        def count(*_: Any) -> None:
            nonlocal statements
            statements += 1

        event.listen(kernel.db.engine.sync_engine, "before_cursor_execute", count)
        profiler = cProfile.Profile() if args.profile else None
        print(f"{'probe':36} {'status':>6} {'CPU us/req':>10} {'SQL/req':>8} {'calls/req':>10}")
        for label, method, path, headers in probes:
            if args.only and args.only not in label:
                continue
            for _ in range(50):  # warm-up: bootstrap, caches, pool
                status = await call(app, method, path, headers)
            statements = 0
            if profiler:
                profiler.enable()
            started = time.process_time()
            for _ in range(args.requests):
                await call(app, method, path, headers)
            cpu = time.process_time() - started
            if profiler:
                profiler.disable()
            sql = statements / args.requests
            calls = await count_calls(app, method, path, headers)
            print(f"{label:36} {status:>6} {cpu / args.requests * 1e6:>10.0f} {sql:>8.2f} {calls:>10.0f}")
        if profiler:
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    asyncio.run(main())
