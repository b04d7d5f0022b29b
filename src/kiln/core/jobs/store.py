"""The SQL behind the runner's two hot state changes: claiming jobs and writing their outcome.

Both are batched (see batching.py) and fenced: a claim only takes `queued`, due jobs; an
outcome is only written while the job is still `running` at the attempt that produced it.
On PostgreSQL each batch is ONE autocommitted statement of fixed text (the worker-slot update
rides in a data-modifying CTE), so it costs one round trip; SQLite, which has no
data-modifying CTEs, uses a short transaction of two statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, or_, select, text, update

from kiln.core.db import Database
from kiln.core.jobs.models import QUEUED, RUNNING, Job, Worker

JOBS = Job.__table__
WORKERS = Worker.__table__
OUTCOME_COLUMNS = ("status", "error", "result", "progress", "run_after", "worker", "heartbeat_at", "finished_at")


@dataclass
class Outcome:
    job: Job  # carries the new values of OUTCOME_COLUMNS
    attempt: int
    slot: str


def _claim_statement(slot_of: dict[str, str], now: datetime) -> Any:
    return (
        update(JOBS)
        .where(
            JOBS.c.id.in_(list(slot_of)),
            JOBS.c.status == QUEUED,
            or_(JOBS.c.run_after.is_(None), JOBS.c.run_after <= now),
        )
        .values(
            status=RUNNING,
            attempts=JOBS.c.attempts + 1,
            worker=case(slot_of, value=JOBS.c.id),
            heartbeat_at=now,
            started_at=case((JOBS.c.started_at.is_(None), now), else_=JOBS.c.started_at),
            updated_at=now,
        )
        .returning(*JOBS.c)
    )


SQLITE_OUTCOME = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_id"), JOBS.c.attempts == bindparam("b_attempt"), JOBS.c.status == RUNNING)
    .values(**{name: bindparam(f"b_{name}", type_=JOBS.c[name].type) for name in OUTCOME_COLUMNS})
)


def _release_statement(slots: list[str], today: str) -> Any:
    return (
        update(WORKERS)
        .where(WORKERS.c.name.in_(slots))
        .values(
            status="idle",
            current_job_id=None,
            jobs_done=WORKERS.c.jobs_done + 1,
            jobs_done_today=case((WORKERS.c.jobs_done_day == today, WORKERS.c.jobs_done_today + 1), else_=1),
            jobs_done_day=today,
        )
    )


# PostgreSQL: one fixed statement text per operation (arrays instead of IN lists / CASE maps), so
# asyncpg's prepared-statement cache hits and each batch costs a single round trip.
PG_CLAIM = text("""
WITH req AS (
  SELECT * FROM unnest(CAST(:ids AS varchar[]), CAST(:slots AS varchar[])) AS r(id, slot)
), claimed AS (
  UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1, worker = req.slot,
         heartbeat_at = :now, started_at = COALESCE(jobs.started_at, :now), updated_at = :now
  FROM req
  WHERE jobs.id = req.id AND jobs.status = 'queued' AND (jobs.run_after IS NULL OR jobs.run_after <= :now)
  RETURNING jobs.*
), busy AS (
  UPDATE workers SET status = 'busy', current_job_id = claimed.id, heartbeat_at = :now
  FROM claimed WHERE workers.name = claimed.worker
)
SELECT * FROM claimed
""").columns(*JOBS.c)

PG_OUTCOMES = text("""
WITH v AS (
  SELECT * FROM unnest(
    CAST(:ids AS varchar[]), CAST(:attempts AS int[]), CAST(:statuses AS varchar[]), CAST(:errors AS text[]),
    CAST(:results AS text[]), CAST(:progress AS float8[]), CAST(:run_after AS timestamptz[]),
    CAST(:workers AS varchar[]), CAST(:heartbeats AS timestamptz[]), CAST(:finished AS timestamptz[])
  ) AS v(id, attempt, status, error, result, progress, run_after, worker, heartbeat_at, finished_at)
), written AS (
  UPDATE jobs SET status = v.status, error = v.error, result = CAST(v.result AS jsonb), progress = v.progress,
         run_after = v.run_after, worker = v.worker, heartbeat_at = v.heartbeat_at,
         finished_at = v.finished_at, updated_at = :now
  FROM v WHERE jobs.id = v.id AND jobs.attempts = v.attempt AND jobs.status = 'running'
  RETURNING jobs.id
), released AS (
  UPDATE workers SET status = 'idle', current_job_id = NULL, jobs_done = jobs_done + 1,
         jobs_done_today = CASE WHEN jobs_done_day = :today THEN jobs_done_today + 1 ELSE 1 END,
         jobs_done_day = :today
  WHERE name = ANY(CAST(:slots AS varchar[]))
)
SELECT id FROM written
""")


class JobStore:
    def __init__(self, db: Database):
        self.db = db
        self._autocommit = None if db.is_sqlite else db.engine.execution_options(isolation_level="AUTOCOMMIT")

    async def claim(self, items: Sequence[tuple[str, str]], now: datetime) -> dict[str, Job]:
        """Claim `(job_id, slot)` pairs; returns the jobs actually taken, by id."""
        if self._autocommit is not None:
            params = {"ids": [i for i, _ in items], "slots": [s for _, s in items], "now": now}
            async with self._autocommit.connect() as conn:
                rows = (await conn.execute(PG_CLAIM, params)).mappings().all()
        else:
            slot_of = dict(items)
            async with self.db.engine.begin() as conn:
                rows = (await conn.execute(_claim_statement(slot_of, now))).mappings().all()
                busy_map = {row["worker"]: row["id"] for row in rows}
                if busy_map:
                    await conn.execute(
                        update(WORKERS)
                        .where(WORKERS.c.name.in_(list(busy_map)))
                        .values(status="busy", current_job_id=case(busy_map, value=WORKERS.c.name), heartbeat_at=now)
                    )
        return {row["id"]: Job(**row) for row in rows}

    async def write_outcomes(self, items: Sequence[Outcome], now: datetime) -> set[str]:
        """Write final (or re-queued) states and free the slots; returns the ids written."""
        today = now.date().isoformat()
        if self._autocommit is not None:
            jobs = [item.job for item in items]
            params = {
                "ids": [j.id for j in jobs],
                "attempts": [item.attempt for item in items],
                "statuses": [j.status for j in jobs],
                "errors": [j.error for j in jobs],
                "results": [None if j.result is None else json.dumps(j.result) for j in jobs],
                "progress": [float(j.progress or 0.0) for j in jobs],
                "run_after": [j.run_after for j in jobs],
                "workers": [j.worker for j in jobs],
                "heartbeats": [j.heartbeat_at for j in jobs],
                "finished": [j.finished_at for j in jobs],
                "slots": [item.slot for item in items],
                "now": now,
                "today": today,
            }
            async with self._autocommit.connect() as conn:
                ids = (await conn.execute(PG_OUTCOMES, params)).scalars().all()
        else:
            ids = await self._sqlite_outcomes(items, now, today)
        return set(ids)

    async def _sqlite_outcomes(self, items: Sequence[Outcome], now: datetime, today: str) -> list[str]:
        # executemany of one cached statement; `updated_at = now` marks the rows this batch wrote,
        # which is only looked up when a fence kept some row out.
        rows = [{"b_id": item.job.id, "b_attempt": item.attempt,
                 **{f"b_{name}": getattr(item.job, name) for name in OUTCOME_COLUMNS}} for item in items]
        async with self.db.engine.begin() as conn:
            result = await conn.execute(SQLITE_OUTCOME.values(updated_at=now), rows)
            ids = [item.job.id for item in items]
            if result.rowcount != len(items):
                ids = list((await conn.execute(
                    select(JOBS.c.id).where(JOBS.c.id.in_(ids), JOBS.c.updated_at == now))).scalars())
            await conn.execute(_release_statement([item.slot for item in items], today))
        return ids
