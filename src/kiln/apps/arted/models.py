"""The arted surface's table: one row per run, which is also its execution-history record
(`execution_id` == `run_id`). The recorder's entities and the history items are JSON lists in the
row (a run has about ten of each), so recording a step is one UPDATE; text entities are stored
inline, media bytes in the blob store (`blob_key`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, utcnow

QUEUED, IN_PROGRESS, COMPLETED, FAILED = "queued", "in_progress", "completed", "failed"


class Run(Base):
    __tablename__ = "arted_runs"
    __table_args__ = (
        Index("ix_arted_runs_created", "created_at", "id"),
        Index("ix_arted_runs_config_created", "config_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    mode: Mapped[str] = mapped_column(String(16), default="full")  # full | stage34
    config_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    session_id: Mapped[str] = mapped_column(String(128), index=True)
    safety_level: Mapped[str] = mapped_column(String(16))
    execution_mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    current_step: Mapped[str] = mapped_column(String(64), default="queued")
    input_text: Mapped[str] = mapped_column(Text)
    final_output: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    used_seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    backend_info: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    outputs: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    entities: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    items: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    entity_count: Mapped[int] = mapped_column(Integer, default=0)
    items_count: Mapped[int] = mapped_column(Integer, default=0)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    total_execution_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
