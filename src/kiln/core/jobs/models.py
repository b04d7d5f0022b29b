"""The `jobs` and `workers` tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_surface_kind_created", "surface", "kind", "created_at"),
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(100))
    surface: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    run_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Worker(Base):
    """One worker slot: runs one job at a time; visible to the fleet dashboards."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(100), default="default")
    status: Mapped[str] = mapped_column(String(16), default="idle")  # idle | busy | offline
    current_job_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    jobs_done_day: Mapped[str | None] = mapped_column(String(10), nullable=True)
    jobs_done_today: Mapped[int] = mapped_column(Integer, default=0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_to_dict(job: Job) -> dict[str, Any]:
    """The engine's own JSON view of a job (the `job.updated` event and the CLI use it)."""
    return {
        "id": job.id,
        "kind": job.kind,
        "surface": job.surface,
        "status": job.status,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "payload": job.payload,
        "result": job.result,
        "error": job.error,
        "owner_id": job.owner_id,
        "worker": job.worker,
        "cancel_requested_at": _iso(job.cancel_requested_at),
        "heartbeat_at": _iso(job.heartbeat_at),
        "run_after": _iso(job.run_after),
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
