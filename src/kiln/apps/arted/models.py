"""The arted surface's tables (prefixed `arted_`): one row per run (which is also its execution-history
record: `execution_id` == `run_id`), the recorder's entities, and the history items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, utcnow

QUEUED, IN_PROGRESS, COMPLETED, FAILED = "queued", "in_progress", "completed", "failed"


class Run(Base):
    __tablename__ = "arted_runs"
    __table_args__ = (Index("ix_arted_runs_created", "created_at", "id"),
                      Index("ix_arted_runs_config_created", "config_id", "created_at"))

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
    entity_count: Mapped[int] = mapped_column(Integer, default=0)
    items_count: Mapped[int] = mapped_column(Integer, default=0)
    total_execution_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Entity(Base):
    __tablename__ = "arted_entities"

    run_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("arted_runs.id", ondelete="CASCADE"), primary_key=True)
    sequence: Mapped[int] = mapped_column(Integer, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(160))
    mime_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)  # text and JSON entities
    blob_key: Mapped[str | None] = mapped_column(String(400), nullable=True)  # media entities
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Item(Base):
    __tablename__ = "arted_items"

    run_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("arted_runs.id", ondelete="CASCADE"), primary_key=True)
    sequence_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[int] = mapped_column(Integer)
    item_type: Mapped[str] = mapped_column(String(48))
    media_type: Mapped[str] = mapped_column(String(16), default="text")
    loop_iteration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)
    file_path: Mapped[str | None] = mapped_column(String(400), nullable=True)
    config_used: Mapped[str | None] = mapped_column(String(128), nullable=True)
    model_used: Mapped[str | None] = mapped_column(String(200), nullable=True)
    backend_used: Mapped[str | None] = mapped_column(String(32), nullable=True)
    execution_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
