"""The robotics surface's tables (all prefixed `robotics_`).

Jobs are the engine's `jobs` rows; `robotics_job_assets` links them to the assets they
target, and a conversion run points at its job, so job and run status never disagree.
Spec documents are stored as JSON in the rows themselves (no side files to lose).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow

# indexing states of an asset
PENDING, INDEXING, INDEXED, FAILED = "pending", "indexing", "indexed", "failed"
INDEXING_STATUSES = (PENDING, INDEXING, INDEXED, FAILED)


class Asset(Base):
    __tablename__ = "robotics_assets"
    __table_args__ = (Index("ix_robotics_assets_registered", "registered_at", "id"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    file_path: Mapped[str] = mapped_column(Text, unique=True)
    file_name: Mapped[str] = mapped_column(String(512))
    file_type: Mapped[str] = mapped_column(String(16), index=True)
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    indexing_status: Mapped[str] = mapped_column(String(16), default=PENDING, index=True)
    source: Mapped[str] = mapped_column(String(16), default="path")  # path | upload | dialog | scan
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    last_indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssetMetadata(Base):
    __tablename__ = "robotics_asset_metadata"

    asset_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("robotics_assets.id", ondelete="CASCADE"), primary_key=True
    )
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    topic_count: Mapped[int] = mapped_column(Integer, default=0)
    message_count: Mapped[int] = mapped_column(BigInteger, default=0)
    sensor_types: Mapped[list[str]] = mapped_column(JSONType, default=list)
    topics: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    default_episode: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    visualization_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    raw_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    indexing_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tag(Base):
    __tablename__ = "robotics_tags"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    normalized_name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AssetTag(Base):
    __tablename__ = "robotics_asset_tags"

    asset_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("robotics_assets.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("robotics_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobAsset(Base):
    """Which assets an engine job targets (index and convert jobs), in request order."""

    __tablename__ = "robotics_job_assets"

    job_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class ConversionConfig(Base):
    __tablename__ = "robotics_conversion_configs"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    normalized_name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    spec_document: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    spec_document_version: Mapped[int] = mapped_column(Integer, default=2)
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConfigRevision(Base):
    """Append-only snapshot of a config's document; never updated after insert."""

    __tablename__ = "robotics_config_revisions"
    __table_args__ = (UniqueConstraint("config_id", "revision_number"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    config_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("robotics_conversion_configs.id", ondelete="CASCADE"), index=True
    )
    revision_number: Mapped[int] = mapped_column(Integer)
    change_kind: Mapped[str] = mapped_column(String(16))  # create | update | duplicate | migration
    change_summary: Mapped[str | None] = mapped_column(Text, nullable=True)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    spec_document: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    spec_document_version: Mapped[int] = mapped_column(Integer, default=2)
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Draft(Base):
    """A draft head: points at its newest revision."""

    __tablename__ = "robotics_drafts"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    source_asset_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("robotics_assets.id", ondelete="SET NULL"), nullable=True
    )
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft|confirmed|saved|discarded
    current_revision_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    confirmed_revision_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    saved_config_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("robotics_conversion_configs.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    discarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DraftRevision(Base):
    __tablename__ = "robotics_draft_revisions"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    draft_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("robotics_drafts.id", ondelete="CASCADE"), index=True)
    revision_number: Mapped[int] = mapped_column(Integer, default=1)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    saved_config_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("robotics_conversion_configs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    source_asset_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | saved | discarded
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    inspection_request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    inspection: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    draft_request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    draft_result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    preview_request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    spec_document: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    spec_document_version: Mapped[int] = mapped_column(Integer, default=2)
    invalid_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConversionRun(Base):
    __tablename__ = "robotics_conversion_runs"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    job_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    asset_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    asset_paths: Mapped[list[str]] = mapped_column(JSONType, default=list)
    saved_config_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    saved_config_revision_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    output_dir: Mapped[str] = mapped_column(Text)
    output_paths: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # the run folder's mtime (ns; -1 = folder gone) when its artifact rows last matched it
    outputs_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class OutputArtifact(Base):
    __tablename__ = "robotics_outputs"
    __table_args__ = (Index("ix_robotics_outputs_created", "created_at", "id"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    conversion_run_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("robotics_conversion_runs.id", ondelete="SET NULL"), nullable=True, index=True
    )
    source_asset_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True, index=True)
    source_asset_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    saved_config_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    output_path: Mapped[str] = mapped_column(Text, unique=True)
    relative_path: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(32), index=True)
    role: Mapped[str] = mapped_column(String(32), index=True)
    media_type: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    availability_status: Mapped[str] = mapped_column(String(16), default="ready", index=True)
    manifest_available: Mapped[bool] = mapped_column(Boolean, default=False)
    report_available: Mapped[bool] = mapped_column(Boolean, default=False)
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
