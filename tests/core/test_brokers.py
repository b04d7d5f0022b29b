"""Jobs through `kiln worker` processes on the RabbitMQ and NATS brokers (by URL), PostgreSQL."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

import tests.core.job_handlers  # noqa: F401
from kiln.core.jobs import SUCCEEDED
from kiln.core.kernel import Kernel
from tests.conftest import make_settings
from tests.core.test_jobs import wait_for_status
from tests.core.test_processes import _env, _kill, _spawn

BROKERS = {
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672/", 5672, "taskiq_aio_pika"),
    "nats": ("nats://127.0.0.1:4222", 4222, "taskiq_nats"),
}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("broker", sorted(BROKERS))
async def test_jobs_run_on_workers_over_broker(tmp_path: Path, db_url: str, broker: str):
    url, port, module = BROKERS[broker]
    pytest.importorskip(module, reason=f"the {broker} extra is not installed")
    if not _listening(port):
        pytest.skip(f"{broker} is not running on 127.0.0.1:{port}")
    home = tmp_path / "home"
    env = _env(home, db_url, KILN_BROKER_URL=url, KILN_WORKER_CONCURRENCY="4")
    worker = _spawn(["worker", "--name", broker], env, tmp_path / "worker.log")
    client = Kernel(make_settings(home, db_url, broker_url=url))
    await client.start("client")
    try:
        await asyncio.sleep(1.0)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
        runs = tmp_path / "runs.log"
        jobs = await client.jobs.submit_many("test.record", [{"log": str(runs)} for _ in range(50)])
        deadline = time.monotonic() + 60
        for job in jobs:
            await wait_for_status(client, job.id, {SUCCEEDED}, timeout=max(1.0, deadline - time.monotonic()))
        assert sorted(line.split()[0] for line in runs.read_text().splitlines()) == sorted(j.id for j in jobs)
    finally:
        await client.stop()
        _kill(worker)
