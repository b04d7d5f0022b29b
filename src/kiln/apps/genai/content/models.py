"""Quotes (a seeded set plus admin-managed ones) for `/v1/quotes*` and the quote of the day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, utcnow


class GenaiQuote(Base):
    __tablename__ = "genai_quotes"
    __table_args__ = (UniqueConstraint("language", "text_hash", name="uq_genai_quote_text"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    language: Mapped[str] = mapped_column(String(8), index=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    source_universe: Mapped[str] = mapped_column(String(255))
    tone: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_approved: Mapped[bool] = mapped_column(Boolean, default=True)
    origin: Mapped[str] = mapped_column(String(16), default="local")
    external_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
