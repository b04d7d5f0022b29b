"""Real processes: `kill -9` of `kiln serve` mid-job, and two `kiln worker`s on PostgreSQL + Redis
where one is killed mid-job and the other finishes it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis

import tests.core.job_handlers  # noqa: F401
from kiln.core.jobs import RUNNING, SUCCEEDED
from kiln.core.kernel import Kernel
from tests.conftest import make_settings
from tests.core.test_jobs import wait_for_status

REDIS_URL = os.environ.get("KILN_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(home: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
    env.update(
        KILN_HOME=str(home),
        KILN_DATABASE_URL=db_url,
        KILN_JOB_MODULES="tests.core.job_handlers",
        KILN_APPS="",
        KILN_JOB_HEARTBEAT_SECONDS="0.3",
        KILN_JOB_STALE_SECONDS="2",
        KILN_LOG_LEVEL="warning",
        PYTHONPATH=os.pathsep.join((str(ROOT / "src"), str(ROOT))),  # this tree's kiln, not an installed one
    )
    env.update(extra)
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kiln.cli", *args], env=env, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def _wait_http(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"server exited: {log.read_text()[-2000:]}"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"server did not become ready: {log.read_text()[-2000:]}")


async def _wait_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)
    return path.read_text()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


async def test_kill_serve_mid_job_then_restart_recovers(tmp_path: Path, db_url: str):
    home, log = tmp_path / "home", tmp_path / "serve.log"
    marker = tmp_path / "started"
    client = Kernel(make_settings(home, db_url))
    await client.start("client")
    try:
        job = await client.jobs.submit("test.sleep", {"seconds": 1.5, "marker": str(marker)})
        port = _free_port()
        env = _env(home, db_url, KILN_PORT=str(port))
        first = _spawn(["serve"], env, log)
        try:
            await _wait_http(port, first, log)
            first_pid = await _wait_file(marker)
            assert (await client.jobs.get(job.id)).status == RUNNING
        finally:
            _kill(first)
        marker.unlink()
        second = _spawn(["serve"], env, log)
        try:
            await _wait_http(port, second, log)
            done = await wait_for_status(client, job.id, {SUCCEEDED}, timeout=30)
            assert done.attempts == 2
            assert done.result["pid"] == second.pid != int(first_pid)
        finally:
            second.terminate()
            second.wait(timeout=15)
    finally:
        await client.stop()


async def test_thousand_jobs_through_a_real_server(tmp_path: Path, db_url: str):
    home, log, runs_log = tmp_path / "home", tmp_path / "serve.log", tmp_path / "runs.log"
    client = Kernel(make_settings(home, db_url))
    await client.start("client")
    try:
        jobs = await client.jobs.submit_many("test.record", [{"log": str(runs_log)} for _ in range(1000)])
        port = _free_port()
        server = _spawn(["serve"], _env(home, db_url, KILN_PORT=str(port)), log)
        try:
            await _wait_http(port, server, log)
            deadline = time.monotonic() + 120
            while (await client.jobs.list(status=SUCCEEDED, limit=1))[1] < 1000:
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                await asyncio.sleep(0.1)
        finally:
            server.terminate()
            server.wait(timeout=15)
        runs = Counter(line.split()[0] for line in runs_log.read_text().splitlines())
        assert set(runs) == {job.id for job in jobs} and max(runs.values()) == 1
    finally:
        await client.stop()


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_two_workers_one_killed_mid_job(tmp_path: Path, db_url: str):
    redis.Redis.from_url(REDIS_URL).flushdb()
    home = tmp_path / "home"
    env = _env(home, db_url, KILN_BROKER_URL=REDIS_URL, KILN_WORKER_CONCURRENCY="4")
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [_spawn(["worker", "--name", f"w{i + 1}"], env, logs[i]) for i in range(2)]
    client = Kernel(make_settings(home, db_url, broker_url=REDIS_URL))
    await client.start("client")
    try:
        # Both workers registered their slots.
        deadline = time.monotonic() + 30
        while True:
            from sqlalchemy import func, select

            from kiln.core.jobs import Worker

            async with client.db.session() as session:
                slots = await session.scalar(select(func.count()).select_from(Worker).where(Worker.status == "idle"))
            if slots == 8:
                break
            assert time.monotonic() < deadline, [p.read_text()[-1500:] for p in logs if p.exists()]
            await asyncio.sleep(0.1)

        # Many jobs across both workers: each runs exactly once.
        runs_log = tmp_path / "runs.log"
        batch = await client.jobs.submit_many("test.record", [{"log": str(runs_log)} for _ in range(200)])
        for job in batch:
            await wait_for_status(client, job.id, {SUCCEEDED}, timeout=60)
        lines = runs_log.read_text().splitlines()
        runs = Counter(line.split()[0] for line in lines)
        assert set(runs) == {job.id for job in batch} and max(runs.values()) == 1
        assert len({line.split()[1] for line in lines}) == 2, "both workers should have taken jobs"

        # Kill the worker running a long job; the survivor recovers and finishes it.
        marker = tmp_path / "started"
        job = await client.jobs.submit("test.sleep", {"seconds": 2.0, "marker": str(marker)})
        victim_pid = int(await _wait_file(marker))
        victim = next(p for p in workers if p.pid == victim_pid)
        survivor = next(p for p in workers if p.pid != victim_pid)
        _kill(victim)
        done = await wait_for_status(client, job.id, {SUCCEEDED}, timeout=40)
        assert done.attempts == 2
        assert done.result["pid"] == survivor.pid
    finally:
        await client.stop()
        for proc in workers:
            _kill(proc)


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_cancel_reaches_a_worker_process_within_two_seconds(tmp_path: Path, db_url: str):
    redis.Redis.from_url(REDIS_URL).flushdb()
    home = tmp_path / "home"
    env = _env(home, db_url, KILN_BROKER_URL=REDIS_URL, KILN_WORKER_CONCURRENCY="2")
    worker = _spawn(["worker", "--name", "solo"], env, tmp_path / "w.log")
    client = Kernel(make_settings(home, db_url, broker_url=REDIS_URL))
    await client.start("client")
    try:
        for kind in ("test.cpu", "test.stubborn"):
            job = await client.jobs.submit(kind, {"seconds": 30})
            await wait_for_status(client, job.id, {RUNNING}, timeout=30)
            await asyncio.sleep(1.0)  # the CPU step reaches its process
            started = time.monotonic()
            await client.jobs.cancel(job.id)
            done = await wait_for_status(client, job.id, {"cancelled", "failed", SUCCEEDED}, timeout=10)
            assert done.status == "cancelled" and time.monotonic() - started < 2.0, (kind, done.status)
    finally:
        await client.stop()
        _kill(worker)
