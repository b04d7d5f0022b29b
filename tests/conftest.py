"""Shared fixtures: every test that touches the database runs on SQLite and on PostgreSQL.

The migration chain is applied once per session per backend; each test then gets an empty
database (a copy of the migrated SQLite file, or truncated PostgreSQL tables).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from kiln.app import create_app
from kiln.core.kernel import Kernel
from kiln.core.migrations import upgrade
from kiln.settings import Settings

PG_ADMIN_DSN = os.environ.get("KILN_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _pg_url(name: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test session, migrated to head."""
    name = f"kiln_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is needed for the test suite ({PG_ADMIN_DSN}): {exc}")
    url = _pg_url(name)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "kiln.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def _truncate_pg(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{row["tablename"]}"' for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(db_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database of the parametrized backend."""
    if db_backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "kiln.db"
        shutil.copyfile(template, target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_truncate_pg(url))
    return url


def make_settings(home: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "database_url": database_url,
        "broker_url": "memory://",
        "job_heartbeat_seconds": 0.2,
        "job_stale_seconds": 2.0,
        "job_progress_interval": 0.05,
        "job_cancel_grace_seconds": 0.5,
        "job_retry_backoff_seconds": 0.05,
        "cpu_workers": 2,
        # httpx's test clients send `Host: testserver`, which a loopback server refuses otherwise.
        "allowed_hosts": ["testserver"],
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path / "home", db_url)


@pytest.fixture
async def kernel(settings: Settings) -> AsyncIterator[Kernel]:
    kernel = Kernel(settings)
    await kernel.start("serve")
    try:
        yield kernel
    finally:
        await kernel.stop()


@pytest.fixture
async def session(kernel: Kernel):
    async with kernel.db.session() as session:
        yield session


SLOW_SHUTDOWN_SECONDS = 20.0
slow_shutdowns: list[str] = []  # task dumps of app shutdowns that took too long (shown in the summary)


def _dump_tasks(label: str) -> None:
    """Every asyncio task's stack: a thread dump shows only the event loop waiting."""
    out = io.StringIO()
    out.write(f"{label}: shutdown still running after {SLOW_SHUTDOWN_SECONDS:.0f} s; asyncio tasks:\n")
    for task in asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    slow_shutdowns.append(out.getvalue())
    sys.stderr.write(out.getvalue())


@pytest.fixture
async def app(settings: Settings, request: pytest.FixtureRequest):
    application = create_app(settings, migrate=False)
    manager = LifespanManager(application, startup_timeout=30, shutdown_timeout=30)
    await manager.__aenter__()
    try:
        yield application
    finally:
        watchdog = asyncio.get_running_loop().call_later(SLOW_SHUTDOWN_SECONDS, _dump_tasks, request.node.nodeid)
        try:
            await manager.__aexit__(None, None, None)
        finally:
            watchdog.cancel()


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat where each failure and error happened, compactly, as the very last lines.

    CI keeps only the tail of the output; a hang caught by pytest-timeout prints every other
    thread's stack after the main thread's traceback, which then falls outside that tail.
    """
    for dump in slow_shutdowns:
        terminalreporter.section("slow app shutdown", sep="~")
        terminalreporter.write(dump[-6000:])
    reports = [r for kind in ("failed", "error") for r in terminalreporter.stats.get(kind, [])]
    if not reports:
        return
    terminalreporter.section("where the failures happened (innermost last)", sep="~")
    for report in reports:
        terminalreporter.line(f"{report.nodeid} [{report.when}]")
        entries = getattr(getattr(report.longrepr, "reprtraceback", None), "reprentries", [])
        for entry in entries[-12:]:
            location = getattr(entry, "reprfileloc", None)
            if location is not None:
                source = next((line[1:].strip() for line in getattr(entry, "lines", []) if line.startswith(">")), "")
                terminalreporter.line(f"    {location.path}:{location.lineno}: {source[:160]}")
        crash = getattr(report.longrepr, "reprcrash", None)
        if crash is not None:
            terminalreporter.line(f"    -> {crash.message.splitlines()[0][:200] if crash.message else ''}")
