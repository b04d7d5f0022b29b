"""The Kernel: one process's engine (database, events, blobs, jobs) and how it starts and stops
in each role: `serve` (embedded: it also runs jobs and periodic tasks), `serve` in distributed
mode (it only submits), and `worker` (it runs jobs; one worker also runs periodic tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any, Literal, TypeVar

from kiln.core.blobs import BlobStore, blob_store_from_settings
from kiln.core.db import Database
from kiln.core.events import EventBus
from kiln.core.jobs.broker import JobBroker
from kiln.core.jobs.registry import PeriodicSpec, startup_cleanups
from kiln.core.jobs.runner import JobRunner, recover_jobs, schedule_future_retries
from kiln.core.jobs.scheduler import PeriodicRunner
from kiln.core.jobs.service import JobService
from kiln.settings import Settings

log = logging.getLogger(__name__)
Role = Literal["serve", "worker", "client"]
T = TypeVar("T")


class Kernel:
    def __init__(self, settings: Settings):
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.db = Database(settings.resolved_database_url)
        self.events = EventBus(settings.resolved_events_url)
        self.blobs: BlobStore = blob_store_from_settings(settings)
        concurrency = len(settings.worker_names) if settings.embedded else settings.worker_concurrency
        self.broker = JobBroker(settings.broker_url, concurrency=concurrency)
        self.jobs = JobService(
            self.db, self.events, self.broker.kick, default_max_attempts=settings.job_default_max_attempts
        )
        self.runner: JobRunner | None = None
        self.periodic: PeriodicRunner | None = None
        self.role: Role | None = None
        self._stop = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._surface_settings: dict[type, Any] = {}
        self.startup_report: dict[str, int] = {}

    def surface_settings(self, cls: type[T]) -> T:
        """A surface's own settings object (e.g. `KILN_MEDIA_*`), read from the environment once."""
        if cls not in self._surface_settings:
            self._surface_settings[cls] = cls()
        return self._surface_settings[cls]

    def set_surface_settings(self, value: Any) -> None:
        """Replace a surface's settings on a running kernel (tests, embedding)."""
        self._surface_settings[type(value)] = value

    def _engine_periodic(self) -> PeriodicSpec:
        async def recover(kernel: Kernel) -> None:
            await recover_jobs(kernel)

        return PeriodicSpec("engine.recover", recover, max(0.5, self.settings.job_stale_seconds / 3))

    async def start(self, role: Role = "serve", *, worker_name: str | None = None) -> None:
        self.role = role
        if role == "worker" and self.settings.embedded:
            raise RuntimeError("`kiln worker` needs a shared broker: set KILN_BROKER_URL (e.g. redis://...)")
        if role == "worker" and self.db.is_sqlite:
            raise RuntimeError("distributed mode needs PostgreSQL: set KILN_DATABASE_URL=postgresql+asyncpg://...")
        await self.events.start()
        await self.broker.startup(consumer=role == "worker")
        runs_jobs = role == "worker" or (role == "serve" and self.settings.embedded)
        if not runs_jobs:
            return
        if role == "worker":
            base = worker_name or f"{socket.gethostname()}-{os.getpid()}"
            names = [f"{base}/{i + 1}" for i in range(self.settings.worker_concurrency)]
        else:
            names = list(self.settings.worker_names)
        self.runner = JobRunner(self, names)
        self.broker.set_executor(self.runner.execute)
        await self.runner.start()
        if role == "serve":
            # Embedded: this process is the only executor, so anything "running" was lost with the last one
            # (and any upload in progress: nothing else writes).
            await self.clean_up_after_crash()
            await recover_jobs(self, orphan_all_running=True)
            await schedule_future_retries(self, self.runner)
        self.periodic = PeriodicRunner(self, use_lock=role == "worker", extra=[self._engine_periodic()])
        self.periodic.start()
        if role == "worker":
            self._listener = asyncio.create_task(self.broker.listen(self._stop))

    async def clean_up_after_crash(self) -> dict[str, int]:
        """Run the start-up clean-ups (the engine's partial blob files, then the surfaces' own);
        log and keep what each cleaned. A failing clean-up is logged and does not stop the start."""
        cleanups = {"engine.partial_blobs": lambda kernel: kernel.blobs.remove_partials(), **startup_cleanups()}
        report: dict[str, int] = {}
        for name, fn in cleanups.items():
            try:
                report[name] = int(await fn(self))
            except Exception:
                log.exception("start-up clean-up %s failed", name)
        cleaned = {name: n for name, n in report.items() if n}
        if cleaned:
            log.warning(
                "start-up clean-up after an unclean stop: %s", ", ".join(f"{name}: {n}" for name, n in cleaned.items())
            )
        self.startup_report = report
        return report

    async def stop(self) -> None:
        self._stop.set()
        if self._listener:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener, timeout=5)
        if self.periodic:
            await self.periodic.stop()
        if self.runner:
            await self.runner.stop()
        await self.broker.shutdown()
        await self.events.stop()
        await self.db.dispose()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
