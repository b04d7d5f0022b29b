"""Job handlers used by the engine tests (also imported by `kiln worker` subprocesses via
KILN_JOB_MODULES, so they must live in an importable module)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from sqlalchemy import text

from kiln.core.jobs import JobContext, TransientJobError, job_handler


@job_handler("test.noop", surface="test")
async def noop(ctx: JobContext, payload: dict) -> dict:
    return {"n": payload.get("n")}


@job_handler("test.record", surface="test")
async def record(ctx: JobContext, payload: dict) -> dict:
    """Appends one line per execution to a file, so tests can count runs."""
    with open(payload["log"], "a") as fh:
        fh.write(f"{ctx.job.id} {os.getpid()}\n")
    return {"pid": os.getpid()}


@job_handler("test.sleep", surface="test", max_attempts=3)
async def sleep(ctx: JobContext, payload: dict) -> dict:
    """Sleeps in small steps, reporting progress; writes a marker file when it starts."""
    if payload.get("marker"):
        Path(payload["marker"]).write_text(str(os.getpid()))
    total = float(payload.get("seconds", 1.0))
    steps = max(1, int(total / 0.05))
    for i in range(steps):
        await asyncio.sleep(total / steps)
        await ctx.progress((i + 1) / steps, f"step {i + 1}/{steps}")
    return {"slept": total, "pid": os.getpid()}


@job_handler("test.flaky", surface="test", max_attempts=3)
async def flaky(ctx: JobContext, payload: dict) -> dict:
    if ctx.job.attempts < int(payload.get("succeed_on", 2)):
        raise TransientJobError(f"not yet (attempt {ctx.job.attempts})")
    return {"attempt": ctx.job.attempts}


@job_handler("test.broken", surface="test")
async def broken(ctx: JobContext, payload: dict) -> None:
    raise ValueError("the payload makes no sense")


def _spin(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@job_handler("test.cpu", surface="test")
async def cpu(ctx: JobContext, payload: dict) -> dict:
    """A CPU-bound step in the process pool that ignores cancellation (it must be killed)."""
    spins = await ctx.run_cpu(_spin, float(payload.get("seconds", 30)))
    return {"spins": spins}


@job_handler("test.stubborn", surface="test")
async def stubborn(ctx: JobContext, payload: dict) -> None:
    """Never checks for cancellation: only asyncio cancellation can stop it."""
    await asyncio.sleep(float(payload.get("seconds", 30)))


def _spin_logged(seconds: float, log: str) -> int:
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return _spin(seconds)


def _fan_out(pool_factory, workers: int, seconds: float, log: str) -> int:
    with pool_factory(workers) as pool:
        futures = [pool.submit(_spin_logged, seconds, log) for _ in range(workers)]
        return sum(f.result() for f in futures)


@job_handler("test.fanout", surface="test", max_attempts=1)
async def fanout(ctx: JobContext, payload: dict) -> dict:
    """CPU work over several processes of the job's own pool, none of which looks at cancellation;
    each process appends its pid to `payload["log"]`. `cpu_step` adds a step in the shared CPU pool."""
    if payload.get("cpu_step"):
        asyncio.ensure_future(ctx.run_cpu(_spin_logged, float(payload["seconds"]), payload["log"]))
    spins = await ctx.run_blocking(
        _fan_out, ctx.process_pool, int(payload.get("workers", 3)), float(payload.get("seconds", 30)), payload["log"]
    )
    return {"spins": spins}


UNSTOPPABLE_RELEASE = asyncio.Event()


@job_handler("test.unstoppable", surface="test", max_attempts=1)
async def unstoppable(ctx: JobContext, payload: dict) -> None:
    """A clean-up that outlives a cancel: waits for `UNSTOPPABLE_RELEASE` whatever happens."""
    try:
        await asyncio.sleep(60)
    finally:
        while not UNSTOPPABLE_RELEASE.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await UNSTOPPABLE_RELEASE.wait()


@job_handler("test.complete_in", surface="test")
async def complete_in(ctx: JobContext, payload: dict) -> dict:
    """Ends its job in its own transaction (`ctx.complete_in`), next to a write of its own; the
    payload can roll that transaction back, or raise once it committed."""
    result = {"n": payload.get("n")}
    async with ctx.kernel.db.engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET progress_message = 'handler wrote' WHERE id = :id"), {"id": ctx.job.id}
        )
        written = await ctx.complete_in(conn, result)
        if payload.get("roll_back"):
            raise ValueError("rolled back after completing")
    if payload.get("raise_after"):
        raise ValueError("raised after the commit")
    return {**result, "written": written}
