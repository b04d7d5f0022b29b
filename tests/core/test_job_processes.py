"""A job's CPU work spread over several processes stops within the cancel grace period + 1 s,
and no Kiln child process outlives a `kill -9` of `kiln serve`."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest

import tests.core.job_handlers  # noqa: F401  (registers test.fanout)
from kiln.core.jobs import RUNNING, processes
from kiln.core.jobs.processes import child_init
from kiln.core.kernel import Kernel
from tests.conftest import make_settings
from tests.core.test_jobs import wait_for_status
from tests.core.test_processes import ROOT, _env, _free_port, _kill, _spawn, _wait_http


async def _pids(log: Path, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(line) for line in log.read_text().split()] if log.exists() else []
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, f"only {len(pids)} of {count} processes started"
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _wait_dead(pids: list[int], timeout: float) -> float:
    started = time.monotonic()
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() - started < timeout, [pid for pid in pids if _alive(pid)]
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_cancel_stops_every_process_of_the_job(kernel: Kernel, tmp_path: Path):
    log = tmp_path / "pids"
    job = await kernel.jobs.submit("test.fanout", {"workers": 3, "seconds": 60, "log": str(log)})
    pids = await _pids(log, 3)
    assert all(_alive(pid) for pid in pids)
    started = time.monotonic()
    await kernel.jobs.cancel(job.id)
    grace = kernel.settings.job_cancel_grace_seconds
    await _wait_dead(pids, grace + 1.0)
    done = await wait_for_status(kernel, job.id, {"cancelled", "failed", "succeeded"}, timeout=10)
    assert done.status == "cancelled" and time.monotonic() - started < grace + 1.0


def test_a_child_whose_server_is_gone_exits_at_once(monkeypatch: pytest.MonkeyPatch):
    gone = psutil.Popen(["true"])
    gone.wait()

    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(processes, "_set_parent_death_signal", lambda: None)  # not on the test process
    monkeypatch.setattr(os, "_exit", exit_)
    with pytest.raises(SystemExit):
        child_init(gone.pid)


@pytest.mark.slow
async def test_no_child_survives_kill_9_of_serve(tmp_path: Path, db_url: str):
    home, log, pid_log = tmp_path / "home", tmp_path / "serve.log", tmp_path / "pids"
    client = Kernel(make_settings(home, db_url))
    await client.start("client")
    try:
        # Queued before the server starts: it picks the job up at start-up. Three processes of the
        # job's own pool plus one step in the shared CPU pool (a forkserver child).
        job = await client.jobs.submit(
            "test.fanout", {"workers": 3, "seconds": 60, "log": str(pid_log), "cpu_step": True}
        )
        port = _free_port()
        server = _spawn(
            ["serve"],
            _env(
                home, db_url, KILN_PORT=str(port), KILN_CPU_WORKERS="2", PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}"
            ),
            log,
        )
        try:
            await _wait_http(port, server, log)
            await _pids(pid_log, 4)
            assert (await client.jobs.get(job.id)).status == RUNNING
            children = psutil.Process(server.pid).children(recursive=True)
            assert len(children) >= 5, children  # 3 + 1 workers, the forkserver (+ resource tracker)
        finally:
            _kill(server)
        time.sleep(5)
        survivors = [p for p in children if _alive(p.pid)]
        assert not survivors, [(p.pid, p.cmdline()) for p in survivors]
    finally:
        await client.stop()
