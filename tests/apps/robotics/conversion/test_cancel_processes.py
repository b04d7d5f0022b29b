"""A conversion spread over several processes: a cancel stops every one of them within the
grace period + 1 s, and a retry right after the cancel succeeds (the cancelled attempt must not
still be deleting or writing files in the run's folder)."""

from __future__ import annotations

import asyncio
import threading
import time

import psutil

from kiln.apps.robotics.conversion import ConversionCancelled, run_conversion
from kiln.core.jobs.processes import JobProcesses
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import recording, register, trigger_spec, wait_job


def _conversion_processes() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


async def test_cancel_stops_all_conversion_processes_then_retry_succeeds(client, tmp_path, settings):
    plan = bf.RecordingPlan(duration_s=60.0, image_size=(160, 120))
    asset = await register(client, recording(tmp_path, "long.mcap", "mcap", plan))
    body = {"asset_ids": [asset["id"]], "spec": trigger_spec(shards=4)}
    run = (await client.post("/conversions", json=body)).json()
    await wait_job(client, run["job_id"], {"running"})
    deadline = time.monotonic() + 30
    while len(_conversion_processes()) < 2:  # the pool's processes are at work
        assert time.monotonic() < deadline, "the conversion never fanned out"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    started = time.monotonic()
    assert (await client.post(f"/jobs/{run['job_id']}/cancel")).status_code == 200
    limit = settings.job_cancel_grace_seconds + 1.0
    while _conversion_processes():
        assert time.monotonic() - started < limit, [p.pid for p in _conversion_processes()]
        await asyncio.sleep(0.02)
    job = await wait_job(client, run["job_id"], timeout=limit)
    assert job["status"] == "cancelled" and time.monotonic() - started < limit

    retried = await client.post(f"/jobs/{run['job_id']}/retry")
    assert retried.status_code == 200, retried.text
    job = await wait_job(client, run["job_id"], timeout=120)
    assert job["status"] == "succeeded", job
    # the conversion's `output_files` are path strings; the records (role, availability) are at /outputs
    outputs = (await client.get("/outputs", params={"conversion_id": run["id"]})).json()
    datasets = [f for f in outputs if f["role"] == "dataset"]
    assert len(datasets) == 4 and all(f["availability_status"] == "ready" for f in datasets), datasets


def test_a_pool_shut_down_while_parts_are_queued_ends_the_conversion(tmp_path):
    """The server stopping kills a job's pools without setting its cancel flag. `kill_pool` shuts
    the pool down with its queued parts cancelled, and a cancelled future is never reported done
    by `concurrent.futures.wait`: when no running part was left to fail with BrokenProcessPool,
    the conversion waited for them forever and held the server's shutdown (seen in CI). The
    shutdown alone, processes left alive, makes that case deterministic."""
    path = recording(tmp_path, "r.mcap", "mcap")
    processes = JobProcesses()

    def shut_down_soon(*args, **kwargs):  # the pool the job asks for, shut down before its workers are up
        pool = processes.pool(*args, **kwargs)
        threading.Timer(0.2, lambda: pool.shutdown(wait=False, cancel_futures=True)).start()
        return pool

    outcome: list[object] = []

    def convert() -> None:
        try:
            outcome.append(
                run_conversion(
                    [path], trigger_spec(shards=64), tmp_path / "out", max_workers=2, pool_factory=shut_down_soon
                )
            )
        except BaseException as exc:  # noqa: BLE001  (the outcome is asserted below)
            outcome.append(exc)

    worker = threading.Thread(target=convert, daemon=True)
    worker.start()
    worker.join(timeout=60)
    processes.kill()
    assert not worker.is_alive(), "the conversion kept waiting for parts its pool will never run"
    assert len(outcome) == 1 and isinstance(outcome[0], ConversionCancelled), outcome
    assert not list((tmp_path / "out").glob("*.parquet"))
