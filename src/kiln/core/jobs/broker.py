"""The queue transport, and the only module that imports taskiq.

Messages carry nothing but a job id: the `jobs` table is the source of truth, so a lost
or duplicated message costs at most a redundant claim attempt (claims are conditional).
Embedded (`memory://`), a kick starts the job's task in this process directly, as taskiq's
in-memory broker would, without building and parsing a taskiq message for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.api import run_receiver_task

log = logging.getLogger(__name__)
Execute = Callable[[str], Awaitable[None]]
TASK_NAME = "kiln.run_job"
QUEUE_NAME = "kiln:jobs"


def _batching_redis_broker(url: str, fetch: int) -> AsyncBroker:
    """A Redis list queue that moves job ids in batches: one LPUSH for a whole submit, and
    BRPOP plus one RPOP-with-count per fetch, instead of one round trip per job."""
    from redis.asyncio import Redis
    from taskiq_redis import ListQueueBroker

    class BatchingListQueueBroker(ListQueueBroker):
        async def kick_many(self, messages: Sequence[bytes]) -> None:
            async with Redis(connection_pool=self.connection_pool) as conn:
                await conn.lpush(self.queue_name, *messages)

        async def listen(self) -> AsyncGenerator[bytes, None]:
            while True:
                try:
                    async with Redis(connection_pool=self.connection_pool) as conn:
                        first = await conn.brpop([self.queue_name], timeout=5)
                        if first is None:
                            continue
                        yield first[1]
                        for message in (await conn.rpop(self.queue_name, fetch - 1) if fetch > 1 else None) or []:
                            yield message
                except RedisConnectionError as exc:
                    log.warning("redis queue connection error: %s", exc)
                    await asyncio.sleep(0.5)

    return BatchingListQueueBroker(url, queue_name=QUEUE_NAME)


def _make_broker(url: str, concurrency: int) -> AsyncBroker:
    if url.startswith("memory"):
        # Concurrency is bounded by the runner's worker slots, not here.
        return InMemoryBroker(
            max_async_tasks=100_000, max_stored_results=1, propagate_exceptions=False, cast_types=False
        )
    if url.startswith(("redis://", "rediss://", "unix://")):
        return _batching_redis_broker(url, fetch=max(1, concurrency // 2))
    if url.startswith(("amqp://", "amqps://")):
        try:
            from taskiq_aio_pika import AioPikaBroker
            from taskiq_aio_pika.queue import Queue
        except ImportError as exc:  # optional extra
            raise RuntimeError("RabbitMQ needs the extra: pip install 'kiln[rabbitmq]'") from exc
        return AioPikaBroker(url, qos=concurrency, task_queues=[Queue(name=QUEUE_NAME)])
    if url.startswith(("nats://", "tls://")):
        try:
            from taskiq_nats import NatsBroker
        except ImportError as exc:  # optional extra
            raise RuntimeError("NATS needs the extra: pip install 'kiln[nats]'") from exc
        # A queue group: each job id goes to one worker (the jobs table, not NATS, is durable).
        return NatsBroker(url, subject="kiln.jobs", queue="kiln-workers")
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
        self._local: set[asyncio.Task[None]] = set()  # jobs started in this process (memory broker)

    @property
    def in_process(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    def set_executor(self, execute: Execute) -> None:
        self._execute = execute

    async def startup(self, *, consumer: bool = False) -> None:
        """Connect; a consumer (`kiln worker`) also sets up what receiving needs (e.g. AMQP channels)."""
        if consumer:
            self.broker.is_worker_process = True
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
        ids = list(job_ids)
        if self.in_process and self._execute is not None:
            # Embedded: a task per job, as taskiq's in-memory broker makes, without building and
            # parsing a taskiq message for it (that was ~60 us of CPU per job, ten times the task).
            for job_id in ids:
                task = asyncio.create_task(self._run_local(self._execute, job_id))
                self._local.add(task)
                task.add_done_callback(self._local.discard)
            return
        kick_many = getattr(self.broker, "kick_many", None)
        if kick_many is not None and len(ids) > 1:
            kicker = self._task.kicker()
            await kick_many([self.broker.formatter.dumps(kicker._prepare_message(i)).message for i in ids])
            return
        # Concurrent sends: a batch of ids costs about one round trip to the broker, not one each.
        for start in range(0, len(ids), 64):
            await asyncio.gather(*(self._task.kiq(job_id) for job_id in ids[start : start + 64]))

    @staticmethod
    async def _run_local(execute: Execute, job_id: str) -> None:
        try:
            await execute(job_id)
        except Exception:  # the job row stays as it was; recovery re-kicks it
            log.exception("running job %s failed", job_id)

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
            while self._local:
                await asyncio.gather(*list(self._local), return_exceptions=True)
            await self.broker.wait_all()

    async def listen(self, stop: asyncio.Event) -> None:
        """Consume job ids until `stop` is set (the body of `kiln worker`)."""
        receiver = asyncio.create_task(
            run_receiver_task(
                self.broker,
                max_async_tasks=self.concurrency,
                max_prefetch=self.concurrency,
                propagate_exceptions=False,
                validate_params=False,
                run_startup=False,
            )
        )
        try:
            await stop.wait()
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
