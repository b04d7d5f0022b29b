"""Per-model daily usage (calls, latency, tokens), aggregated in memory and written in batches.

Writing one row per inference call would put a database write (and on SQLite the write lock) on
the hot path of every call; instead each process sums calls per (day, model, user, metric) and
upserts the sums every `FLUSH_SECONDS`, at shutdown, and before its own usage reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.modelops.models import GenaiModelUsage

log = logging.getLogger(__name__)
FLUSH_SECONDS = 2.0
Key = tuple[date, str, str, str]


class UsageBuffer:
    def __init__(self, kernel: Any):
        self.kernel = kernel
        self.pending: dict[Key, list[float]] = defaultdict(lambda: [0.0, 0])
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    def add(self, model_id: str, user_id: str, latency_ms: float, usage: dict[str, Any]) -> None:
        day = date.today()
        metrics = {"calls": 1.0, "latency_ms": latency_ms}
        for key in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(key), int | float):
                metrics[key] = float(usage[key])
        for metric, value in metrics.items():
            entry = self.pending[(day, model_id, user_id, metric)]
            entry[0] += value
            entry[1] += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while self.pending:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:  # kept for the next round; never lost to a transient DB error
                log.warning("genai usage flush failed; retrying", exc_info=True)

    async def flush(self) -> None:
        async with self.lock:
            if not self.pending:
                return
            batch, self.pending = dict(self.pending), defaultdict(lambda: [0.0, 0])
            try:
                async with self.kernel.db.session() as session:
                    await upsert(session, batch)
                    await session.commit()
            except Exception:
                for key, (value, requests) in batch.items():
                    entry = self.pending[key]
                    entry[0] += value
                    entry[1] += requests
                raise

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(Exception):
            await self.flush()


async def upsert(session: AsyncSession, batch: dict[Key, list[float]]) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    rows = [
        {"day": d, "model_id": m, "user_id": u, "metric": k, "value": v, "requests": int(n)}
        for (d, m, u, k), (v, n) in batch.items()
    ]
    stmt = insert(GenaiModelUsage).values(rows)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["day", "model_id", "user_id", "metric"],
            set_={
                "value": GenaiModelUsage.value + stmt.excluded.value,
                "requests": GenaiModelUsage.requests + stmt.excluded.requests,
            },
        )
    )


def buffer_of(kernel: Any) -> UsageBuffer:
    buffer = getattr(kernel, "genai_usage", None)
    if buffer is None:
        buffer = kernel.genai_usage = UsageBuffer(kernel)
    return buffer


async def usage_summary(session: AsyncSession, kernel: Any, model_id: str) -> dict[str, Any]:
    await buffer_of(kernel).flush()
    rows = await session.execute(
        select(GenaiModelUsage.metric, GenaiModelUsage.value, GenaiModelUsage.requests).where(
            GenaiModelUsage.model_id == model_id
        )
    )
    metrics: dict[str, dict[str, float]] = {}
    for metric, value, requests in rows:
        entry = metrics.setdefault(metric, {"value": 0.0, "requests": 0})
        entry["value"] += float(value)
        entry["requests"] += int(requests)
    return {"total_requests": int(metrics.get("calls", {}).get("requests", 0)), "metrics": metrics}
