"""Tables of the media surface. Confidence is stored on one scale, 0..1, everywhere; the API
edge converts media confidence to the contract's percent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow

PENDING, UPLOADED, EXTRACTING, PROCESSING, READY, FAILED = (
    "PENDING",
    "UPLOADED",
    "EXTRACTING",
    "PROCESSING",
    "READY",
    "FAILED",
)
STATUSES = (PENDING, UPLOADED, EXTRACTING, PROCESSING, READY, FAILED)
IN_FLIGHT = (EXTRACTING, PROCESSING)


class MediaItem(Base):
    __tablename__ = "media_items"
    __table_args__ = (
        Index("ix_media_items_user_created", "user_id", "created_at"),
        # one file per user: two concurrent uploads of the same bytes cannot both be accepted (0006)
        Index(
            "uq_media_items_user_sha256",
            "user_id",
            "sha256",
            unique=True,
            sqlite_where=text("sha256 IS NOT NULL"),
            postgresql_where=text("sha256 IS NOT NULL"),
        ),
        Index("ix_media_items_user_lat_lng", "user_id", "lat", "lng", "updated_at"),
        # covering indexes of the map's row-level statistics and border strips (migration 0006)
        Index("ix_media_items_map_lat", "user_id", "has_trash", "status", "lat", "lng", "confidence", "id"),
        Index("ix_media_items_map_lng", "user_id", "has_trash", "status", "lng", "lat", "confidence", "id"),
        Index("ix_media_items_status_updated", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    filename: Mapped[str] = mapped_column(String(255))
    mime: Mapped[str | None] = mapped_column(String(64), nullable=True)
    blob_key: Mapped[str] = mapped_column(String(512))
    thumbnail_key: Mapped[str | None] = mapped_column(String(512), nullable=True)
    hf_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    hf_thumbnail_path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    technical_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    camera_make: Mapped[str | None] = mapped_column(String(128), nullable=True)
    camera_model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lng: Mapped[float | None] = mapped_column(Float, nullable=True)
    altitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    address: Mapped[str | None] = mapped_column(String(255), nullable=True)
    has_trash: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)  # 0..1; None = not detected
    detector: Mapped[str | None] = mapped_column(String(255), nullable=True)
    worker_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    job_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MediaTaskLog(Base):
    __tablename__ = "media_task_logs"
    __table_args__ = (Index("ix_media_task_logs_media_at", "media_id", "at"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    media_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("media_items.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32), default="STATUS_CHANGE")
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    worker_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MediaDetection(Base):
    __tablename__ = "media_detections"
    __table_args__ = (Index("ix_media_detections_media_label", "media_id", "label"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    media_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("media_items.id", ondelete="CASCADE")
    )  # indexed by (media_id, label)
    label: Mapped[str] = mapped_column(String(100))
    confidence: Mapped[float] = mapped_column(Float)  # 0..1
    bbox: Mapped[dict[str, float]] = mapped_column(JSONType)  # {x, y, w, h} normalised, top-left origin
    area_sqm: Mapped[float | None] = mapped_column(Float, nullable=True)
    is_manual: Mapped[bool] = mapped_column(Boolean, default=False)
    detector: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MediaLoadSample(Base):
    """System load persisted on a timer, so the 7-day history is days, not calls."""

    __tablename__ = "media_load_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    cpu_percent: Mapped[float] = mapped_column(Float)
    memory_percent: Mapped[float] = mapped_column(Float)
    load: Mapped[float] = mapped_column(Float)  # max(cpu, memory)


class MediaUserActivity(Base):
    """One row per user per UTC hour in which they made a request (active trend, daily uniques)."""

    __tablename__ = "media_user_activity"

    user_id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)


class MediaResponseStats(Base):
    """Request timings of one process over one flush interval, as a mergeable histogram."""

    __tablename__ = "media_response_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    count: Mapped[int] = mapped_column(Integer)
    total_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)
    histogram: Mapped[list[int]] = mapped_column(JSONType)


class MediaGridMember(Base):
    """What one contributing item (READY, geotagged, has_trash) added to the grid (grid.py)."""

    __tablename__ = "media_grid_members"

    media_id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True)  # no FK: removal must subtract
    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    lat_idx: Mapped[int] = mapped_column(BigInteger)  # level-0 (0.005°) cell
    lng_idx: Mapped[int] = mapped_column(BigInteger)
    confidence: Mapped[int] = mapped_column(BigInteger)  # micro units of 0..1
    labels: Mapped[dict[str, int]] = mapped_column(JSONType)  # detections per label


class MediaGridCell(Base):
    __tablename__ = "media_grid_cells"
    # lng-first and covering (0007): a map bbox's tall edge bands are one range scan of it
    __table_args__ = (
        Index("ix_media_grid_cells_lng", "user_id", "level", "lng_idx", "lat_idx", "count", "confidence_sum"),
    )

    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 0: 0.005°, 1: 0.05°
    lat_idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lng_idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    confidence_sum: Mapped[int] = mapped_column(BigInteger)  # micro units


class MediaGridLabel(Base):
    __tablename__ = "media_grid_labels"
    __table_args__ = (Index("ix_media_grid_labels_lng", "user_id", "level", "lng_idx", "lat_idx", "label", "count"),)

    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    lat_idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    lng_idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)  # detections


class MediaGridVersion(Base):
    """Bumped with every grid change of the user: the stats cache's version."""

    __tablename__ = "media_grid_versions"

    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
