"""The SQL behind the runner's two hot state changes: claiming jobs and writing their outcome.

Both are batched (see batching.py) and fenced: a claim only takes `queued`, due jobs; an
outcome is only written while the job is still `running` at the attempt that produced it.
On PostgreSQL each batch is ONE autocommitted statement of fixed text (the worker-slot update
rides in a data-modifying CTE), so it costs one round trip; SQLite, which has no
data-modifying CTEs, uses a short transaction of two fixed-text statements, the second sent
with the COMMIT in one trip to the connection's thread.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kiln.core.db import Database
from kiln.core.jobs.models import QUEUED, RUNNING, SUCCEEDED, Job, Worker

JOBS = Job.__table__
WORKERS = Worker.__table__
OUTCOME_COLUMNS = ("status", "error", "result", "progress", "run_after", "worker", "heartbeat_at", "finished_at")


@dataclass
class Outcome:
    job: Job  # carries the new values of OUTCOME_COLUMNS
    attempt: int
    slot: str


# SQLite: fixed statement texts too, built once. The per-batch variety (which job goes to which
# slot, how many slots) travels as one JSON text read with json_each, so no statement is built,
# and none compiled, per batch: building the IN lists and CASE maps cost as much as running them.
_NOW = bindparam("now", type_=JOBS.c.updated_at.type)
_JOB_COLUMNS = ", ".join(c.name for c in JOBS.c)

SQLITE_CLAIM = (
    text(f"""
UPDATE jobs SET status = '{RUNNING}', attempts = attempts + 1,
       worker = (SELECT value FROM json_each(:slot_of) WHERE key = jobs.id),
       heartbeat_at = :now, started_at = COALESCE(started_at, :now), updated_at = :now
WHERE id IN (SELECT key FROM json_each(:slot_of)) AND status = '{QUEUED}'
  AND (run_after IS NULL OR run_after <= :now)
RETURNING {_JOB_COLUMNS}
""")
    .bindparams(_NOW)
    .columns(*JOBS.c)
)

# The transaction's last write goes with its COMMIT in one hop (_commit_with): plain sqlite3 SQL.
SQLITE_BUSY = """
UPDATE workers SET status = 'busy', heartbeat_at = :now,
       current_job_id = (SELECT value FROM json_each(:job_of) WHERE key = workers.name)
WHERE name IN (SELECT key FROM json_each(:job_of))
"""

SQLITE_OUTCOME = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("b_id"), JOBS.c.attempts == bindparam("b_attempt"), JOBS.c.status == RUNNING)
    .values(
        updated_at=bindparam("b_now", type_=JOBS.c.updated_at.type),
        **{name: bindparam(f"b_{name}", type_=JOBS.c[name].type) for name in OUTCOME_COLUMNS},
    )
)

SQLITE_WRITTEN = text(
    "SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(:ids)) AND updated_at = :now"
).bindparams(_NOW)

# A slot is released only while it still names the job whose outcome is written: a handler
# that completed its job in its own transaction (`JobContext.complete_in`) released it there, and
# an outcome the runner writes after that (the handler raised later) must not count the job twice.
SQLITE_RELEASE = """
UPDATE workers SET status = 'idle', current_job_id = NULL, jobs_done = jobs_done + 1,
       jobs_done_today = CASE WHEN jobs_done_day = :today THEN jobs_done_today + 1 ELSE 1 END,
       jobs_done_day = :today
WHERE name IN (SELECT key FROM json_each(:job_of))
  AND current_job_id = (SELECT value FROM json_each(:job_of) WHERE key = workers.name)
"""


async def _commit_with(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> None:
    """Run `sql` and COMMIT in one trip to the SQLite connection's thread instead of two.

    The transaction was opened by a statement sent through SQLAlchemy, which took the write gate
    (core.db); SQLAlchemy's own commit at the end of the block then finds no transaction open,
    makes no trip, and frees the gate.
    """

    def run(sqlite: sqlite3.Connection) -> None:
        sqlite.execute(sql, params)
        sqlite.commit()

    await conn.sync_connection.connection.driver_connection.run(run)


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
  UPDATE workers SET status = 'idle', current_job_id = NULL, jobs_done = workers.jobs_done + 1,
         jobs_done_today = CASE WHEN workers.jobs_done_day = :today THEN workers.jobs_done_today + 1 ELSE 1 END,
         jobs_done_day = :today
  FROM unnest(CAST(:slots AS varchar[]), CAST(:ids AS varchar[])) AS s(slot, job_id)
  WHERE workers.name = s.slot AND workers.current_job_id = s.job_id
)
SELECT id FROM written
""")

# `JobContext.complete_in`: one job SUCCEEDED and its slot released inside the caller's
# transaction (its commit carries the job's end). Fenced like every outcome; the slot only when
# the job was written. Portable Core statements, built once.
_S_NOW = bindparam("s_now", type_=JOBS.c.updated_at.type)
SUCCEED_IN = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("s_id"), JOBS.c.attempts == bindparam("s_attempt"), JOBS.c.status == RUNNING)
    .values(
        status=SUCCEEDED,
        error=None,
        result=bindparam("s_result", type_=JOBS.c.result.type),
        progress=1.0,
        finished_at=_S_NOW,
        updated_at=_S_NOW,
    )
)
RELEASE_IN = (
    update(WORKERS)
    .where(WORKERS.c.name == bindparam("s_slot"), WORKERS.c.current_job_id == bindparam("s_id"))
    .values(
        status="idle",
        current_job_id=None,
        jobs_done=WORKERS.c.jobs_done + 1,
        jobs_done_today=case((WORKERS.c.jobs_done_day == bindparam("s_today"), WORKERS.c.jobs_done_today + 1), else_=1),
        jobs_done_day=bindparam("s_today"),
    )
)


class JobStore:
    def __init__(self, db: Database):
        self.db = db
        self._autocommit = None if db.is_sqlite else db.engine.execution_options(isolation_level="AUTOCOMMIT")
        # a timestamp as SQLAlchemy stores it, for the plain sqlite3 statements
        self._sqlite_time = JOBS.c.updated_at.type.bind_processor(db.engine.dialect)

    async def claim(self, items: Sequence[tuple[str, str]], now: datetime) -> dict[str, Job]:
        """Claim `(job_id, slot)` pairs; returns the jobs actually taken, by id."""
        if self._autocommit is not None:
            params = {"ids": [i for i, _ in items], "slots": [s for _, s in items], "now": now}
            async with self._autocommit.connect() as conn:
                rows = (await conn.execute(PG_CLAIM, params)).mappings().all()
        else:
            async with self.db.engine.begin() as conn:
                rows = (
                    (await conn.execute(SQLITE_CLAIM, {"slot_of": json.dumps(dict(items)), "now": now}))
                    .mappings()
                    .all()
                )
                if rows:
                    job_of = json.dumps({row["worker"]: row["id"] for row in rows})
                    await _commit_with(conn, SQLITE_BUSY, {"job_of": job_of, "now": self._sqlite_time(now)})
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
        rows = [
            {
                "b_id": item.job.id,
                "b_attempt": item.attempt,
                "b_now": now,
                **{f"b_{name}": getattr(item.job, name) for name in OUTCOME_COLUMNS},
            }
            for item in items
        ]
        ids = [item.job.id for item in items]
        async with self.db.engine.begin() as conn:
            result = await conn.execute(SQLITE_OUTCOME, rows[0] if len(rows) == 1 else rows)
            if result.rowcount != len(items):
                ids = list((await conn.execute(SQLITE_WRITTEN, {"ids": json.dumps(ids), "now": now})).scalars())
            job_of = json.dumps({item.slot: item.job.id for item in items})
            await _commit_with(conn, SQLITE_RELEASE, {"job_of": job_of, "today": today})
        return ids

    async def succeed_in(
        self, conn: AsyncConnection, job_id: str, attempt: int, slot: str, result: Any, now: datetime
    ) -> bool:
        """Mark one running job SUCCEEDED and release its slot in the caller's open transaction
        (committed, or rolled back, with the caller's own writes); False when the fence kept it out."""
        params = {"s_id": job_id, "s_attempt": attempt, "s_result": result, "s_now": now}
        if not (await conn.execute(SUCCEED_IN, params)).rowcount:
            return False
        await conn.execute(RELEASE_IN, {"s_id": job_id, "s_slot": slot, "s_today": now.date().isoformat()})
        return True
