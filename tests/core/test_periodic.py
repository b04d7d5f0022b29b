"""Periodic tasks: run in an embedded server, and in exactly one of several workers (advisory lock)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from kiln.core.jobs.registry import PeriodicSpec
from kiln.core.jobs.scheduler import PeriodicRunner
from kiln.core.kernel import Kernel
from tests.conftest import make_settings


def counting_spec(runs: list[str], who: str) -> PeriodicSpec:
    async def tick(kernel: Kernel) -> None:
        runs.append(who)

    return PeriodicSpec(f"test.tick.{who}", tick, 0.05)


async def test_embedded_server_runs_periodic_tasks(kernel: Kernel):
    runs: list[str] = []
    runner = PeriodicRunner(kernel, use_lock=False, extra=[counting_spec(runs, "a")])
    runner.start()
    await asyncio.sleep(0.3)
    await runner.stop()
    assert runs.count("a") >= 3


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_exactly_one_worker_leads_and_another_takes_over(tmp_path: Path, db_url: str):
    kernels = [Kernel(make_settings(tmp_path / f"home{i}", db_url)) for i in range(2)]
    runs: list[str] = []
    runners = [
        PeriodicRunner(k, use_lock=True, extra=[counting_spec(runs, name)])
        for k, name in zip(kernels, "ab", strict=True)
    ]
    for runner in runners:
        runner.tasks = runner.tasks[:1]
        runner.start()
    try:
        await asyncio.wait_for(asyncio.shield(_first_leader(runners)), 10)
        await asyncio.sleep(0.5)
        leaders = [r for r in runners if r.is_leader.is_set()]
        assert len(leaders) == 1
        leader_name = "ab"[runners.index(leaders[0])]
        assert set(runs) == {leader_name}
        await leaders[0].stop()
        follower = next(r for r in runners if r is not leaders[0])
        deadline = time.monotonic() + 10
        while not follower.is_leader.is_set():
            assert time.monotonic() < deadline, "the follower never took over"
            await asyncio.sleep(0.1)
        runs.clear()
        await asyncio.sleep(0.3)
        assert set(runs) == {"ab"[runners.index(follower)]}
    finally:
        for runner in runners:
            await runner.stop()
        for kernel in kernels:
            await kernel.db.dispose()


async def _first_leader(runners: list[PeriodicRunner]) -> None:
    while not any(r.is_leader.is_set() for r in runners):
        await asyncio.sleep(0.05)
