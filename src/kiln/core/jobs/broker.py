"""The queue transport, and the only module that imports taskiq.

Messages carry nothing but a job id: the `jobs` table is the source of truth, so a lost
or duplicated message costs at most a redundant claim attempt (claims are conditional).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from taskiq import AsyncBroker, InMemoryBroker
from taskiq.api import run_receiver_task

Execute = Callable[[str], Awaitable[None]]
TASK_NAME = "kiln.run_job"
QUEUE_NAME = "kiln:jobs"


def _make_broker(url: str, concurrency: int) -> AsyncBroker:
    if url.startswith("memory"):
        # Concurrency is bounded by the runner's worker slots, not here.
        return InMemoryBroker(max_async_tasks=100_000, max_stored_results=1, propagate_exceptions=False)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from taskiq_redis import ListQueueBroker

        return ListQueueBroker(url, queue_name=QUEUE_NAME)
    if url.startswith(("amqp://", "amqps://")):
        try:
            from taskiq_aio_pika import AioPikaBroker
        except ImportError as exc:  # optional extra
            raise RuntimeError("RabbitMQ needs the extra: pip install 'kiln[rabbitmq]'") from exc
        return AioPikaBroker(url, queue_name=QUEUE_NAME)
    if url.startswith(("nats://", "tls://")):
        try:
            from taskiq_nats import NatsBroker
        except ImportError as exc:  # optional extra
            raise RuntimeError("NATS needs the extra: pip install 'kiln[nats]'") from exc
        return NatsBroker(url, queue=QUEUE_NAME)
    raise ValueError(f"unsupported broker URL {url!r}: use memory://, redis://, amqp:// or nats://")


class JobBroker:
    """Sends job ids to whoever executes them: this process (memory) or `kiln worker` processes."""

    def __init__(self, url: str, *, concurrency: int = 10):
        self.url = url
        self.concurrency = concurrency
        self.broker = _make_broker(url, concurrency)
        self._execute: Execute | None = None

        async def run_job(job_id: str) -> None:
            if self._execute is None:
                raise RuntimeError("this process does not execute jobs")
            await self._execute(job_id)

        self._task = self.broker.register_task(run_job, task_name=TASK_NAME)
        self._started = False

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    def set_executor(self, execute: Execute) -> None:
        self._execute = execute

    async def startup(self) -> None:
        if not self._started:
            await self.broker.startup()
            self._started = True

    async def shutdown(self) -> None:
        if self._started:
            self._started = False
            with contextlib.suppress(Exception):
                await self.broker.shutdown()

    async def kick(self, job_ids: Sequence[str]) -> None:
        if self.in_process and self._execute is None:
            # An admin command on an embedded deployment: the server's recovery sweep picks the job up.
            return
        # Concurrent sends: a batch of ids costs about one round trip to the broker, not one each.
        ids = list(job_ids)
        for start in range(0, len(ids), 64):
            await asyncio.gather(*(self._task.kiq(job_id) for job_id in ids[start : start + 64]))

    async def ping(self) -> bool:
        """Whether the transport is reachable (readiness)."""
        if self.in_process:
            return True
        pool: Any = getattr(self.broker, "connection_pool", None)
        if pool is not None:
            from redis.asyncio import Redis

            async with Redis(connection_pool=pool) as conn:
                return bool(await conn.ping())
        return self._started

    async def drain(self) -> None:
        """Wait for jobs kicked in this process to finish (memory broker only; tests and shutdown)."""
        if isinstance(self.broker, InMemoryBroker):
            await self.broker.wait_all()

    async def listen(self, stop: asyncio.Event) -> None:
        """Consume job ids until `stop` is set (the body of `kiln worker`)."""
        receiver = asyncio.create_task(
            run_receiver_task(
                self.broker,
                max_async_tasks=self.concurrency,
                max_prefetch=self.concurrency,
                propagate_exceptions=False,
                run_startup=False,
            )
        )
        try:
            await stop.wait()
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
