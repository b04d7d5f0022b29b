"""The global runtime configuration (one row per key; `runtime_profile` ∈ online|offline)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, UTCDateTime, UUIDStr, utcnow


class GenaiRuntimeConfig(Base):
    __tablename__ = "genai_runtime_config"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
