"""End-to-end no-op job throughput (submit -> succeeded).

Prints, in one run: Kiln embedded (SQLite, in-process workers); Kiln distributed (PostgreSQL +
Redis + 2 `kiln worker` processes); and Celery (Redis broker + result backend, 2 worker
processes) on the same no-op task, with the ratio of Kiln distributed to Celery.

Then the embedded CPU per job with one job in flight at a time (what a surface's request pays).

    .venv/bin/python bench/jobs_throughput.py [--jobs 2000] [--serial 1000] [--skip-celery]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import noop_jobs  # noqa: E402,F401  (registers bench.noop)
from sqlalchemy import delete, func, select  # noqa: E402

from kiln.core.jobs import SUCCEEDED, Job, Worker  # noqa: E402
from kiln.core.jobs.service import JOB_UPDATED  # noqa: E402
from kiln.core.kernel import Kernel  # noqa: E402
from kiln.core.migrations import upgrade  # noqa: E402
from kiln.settings import Settings  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
CELERY_REDIS = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/13")


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _wait_all(kernel: Kernel, n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    count = select(func.count()).select_from(Job).where(Job.kind == "bench.noop", Job.status == SUCCEEDED)
    while True:
        async with kernel.db.session() as session:
            done = await session.scalar(count)
        if done >= n:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"only {done}/{n} jobs finished in {timeout}s")
        await asyncio.sleep(0.02)


async def _submit_and_wait(kernel: Kernel, n: int, batch: int) -> float:
    started = time.perf_counter()
    for offset in range(0, n, batch):
        await kernel.jobs.submit_many("bench.noop", [{"n": i} for i in range(offset, min(n, offset + batch))])
    await _wait_all(kernel, n)
    return n / (time.perf_counter() - started)


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


async def _warm_then_measure(kernel: Kernel, n: int, batch: int, procs: list[psutil.Process]) -> tuple[float, float]:
    """A warm-up round (imports, connections, prepared statements), then the measured one:
    (jobs/s, CPU ms per job spent by `procs`: the processes that submit and run the jobs)."""
    await _submit_and_wait(kernel, min(200, n), batch)
    async with kernel.db.session() as session:
        await session.execute(delete(Job))
        await session.commit()
    cpu = _cpu_seconds(procs)
    rate = await _submit_and_wait(kernel, n, batch)
    return rate, (_cpu_seconds(procs) - cpu) / n * 1000


@asynccontextmanager
async def _embedded_kernel() -> AsyncIterator[Kernel]:
    """A started embedded kernel (SQLite, in-process workers) in a throwaway home."""
    home = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    try:
        settings = Settings(_env_file=None, home=home, broker_url="memory://", log_level="warning")
        await asyncio.to_thread(upgrade, settings.resolved_database_url)
        kernel = Kernel(settings)
        await kernel.start("serve")
        try:
            yield kernel
        finally:
            await kernel.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def embedded(n: int, batch: int) -> tuple[float, float]:
    async with _embedded_kernel() as kernel:
        # this process submits, polls for completion and runs the jobs
        return await _warm_then_measure(kernel, n, batch, [psutil.Process()])


async def embedded_serial(n: int) -> float:
    """CPU ms per job with one job in flight at a time, as a surface's request sees the engine:
    submit, then wait for its `succeeded` event (no batching, no polling)."""
    async with _embedded_kernel() as kernel, kernel.events.subscribe(JOB_UPDATED) as sub:

        async def one(i: int) -> None:
            job = await kernel.jobs.submit("bench.noop", {"n": i})
            async for _topic, data in sub:
                if data["id"] == job.id and data["status"] == SUCCEEDED:
                    return

        for i in range(min(200, n)):  # warm-up
            await one(i)
        started = time.process_time()
        for i in range(n):
            await one(i)
        return (time.process_time() - started) / n * 1000


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def distributed(n: int, batch: int, workers: int, concurrency: int) -> tuple[float, float]:
    name = f"kiln_bench_{uuid.uuid4().hex[:8]}"
    await _pg(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    home = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await asyncio.to_thread(upgrade, url)
        redis.Redis.from_url(REDIS_URL).flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_")}
        env.update(
            KILN_HOME=str(home),
            KILN_DATABASE_URL=url,
            KILN_BROKER_URL=REDIS_URL,
            KILN_APPS="",
            KILN_JOB_MODULES="noop_jobs",
            KILN_WORKER_CONCURRENCY=str(concurrency),
            KILN_LOG_LEVEL="warning",
            PYTHONPATH=f"{ROOT / 'bench'}:{ROOT}",
        )
        for i in range(workers):
            procs.append(
                subprocess.Popen([sys.executable, "-m", "kiln.cli", "worker", "--name", f"bench{i}"], env=env, cwd=ROOT)
            )
        settings = Settings(_env_file=None, home=home, database_url=url, broker_url=REDIS_URL, log_level="warning")
        kernel = Kernel(settings)
        await kernel.start("client")
        try:
            deadline = time.monotonic() + 60
            while True:
                async with kernel.db.session() as session:
                    slots = await session.scalar(select(func.count()).select_from(Worker))
                if slots == workers * concurrency:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("workers did not start")
                await asyncio.sleep(0.2)
            # the worker processes only (this one submits and polls)
            return await _warm_then_measure(kernel, n, batch, [psutil.Process(p.pid) for p in procs])
        finally:
            await kernel.stop()
    finally:
        _stop_all(procs)
        shutil.rmtree(home, ignore_errors=True)
        await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def celery(n: int, workers: int) -> float:
    redis.Redis.from_url(CELERY_REDIS).flushdb()
    env = dict(os.environ, BENCH_CELERY="1", BENCH_CELERY_REDIS=CELERY_REDIS, PYTHONPATH=str(ROOT / "bench"))
    os.environ.update(BENCH_CELERY="1", BENCH_CELERY_REDIS=CELERY_REDIS)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "noop_jobs",
                "worker",
                "--pool=prefork",
                "--concurrency=1",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"bench{i}@%h",
                "--loglevel=WARNING",
            ],
            env=env,
            cwd=ROOT / "bench",
        )
        for i in range(workers)
    ]
    try:
        app = noop_jobs.celery_app()
        task = app.tasks["bench.noop"]
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < workers:
            if time.monotonic() > deadline:
                raise SystemExit("celery workers did not start")
        warm = [task.delay(i) for i in range(min(200, n))]
        for result in warm:
            result.get(timeout=120)
        started = time.perf_counter()
        results = [task.delay(i) for i in range(n)]
        for result in results:
            result.get(timeout=600)
        return n / (time.perf_counter() - started)
    finally:
        _stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100, help="jobs per submit_many call")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=10, help="slots per kiln worker")
    parser.add_argument("--serial", type=int, default=1000, help="jobs run one at a time (CPU per serial job)")
    parser.add_argument("--skip-celery", action="store_true")
    args = parser.parse_args()

    emb, emb_cpu = asyncio.run(embedded(args.jobs, args.batch))
    print(
        f"kiln embedded (SQLite, in-process):       {emb:8.0f} jobs/s   goal >= 1000: {emb / 1000:.2f}x"
        f"   CPU per job {emb_cpu:.2f} ms (submit + run + polling, one process)"
    )
    serial_cpu = asyncio.run(embedded_serial(args.serial))
    print(f"kiln embedded, one job at a time:        CPU per job {serial_cpu:.2f} ms (submit -> succeeded event)")
    dist, dist_cpu = asyncio.run(distributed(args.jobs, args.batch, args.workers, args.concurrency))
    print(
        f"kiln distributed (PG + Redis, {args.workers} workers): {dist:8.0f} jobs/s"
        f"   CPU per job {dist_cpu:.2f} ms (worker processes)"
    )
    if not args.skip_celery:
        cel = celery(args.jobs, args.workers)
        print(f"celery (Redis, {args.workers} worker processes):    {cel:8.0f} jobs/s")
        print(f"ratio kiln distributed / celery:           {dist / cel:8.2f}x   goal >= 1.0")


if __name__ == "__main__":
    main()
