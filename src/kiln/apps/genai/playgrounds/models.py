"""Playground sessions and their messages (`genai_playground_*`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class PlaygroundSession(Base):
    __tablename__ = "genai_playground_sessions"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    owner_user_id: Mapped[str] = mapped_column(UUIDStr(), index=True)
    playground_kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(String(200), default="New conversation")
    title_source: Mapped[str] = mapped_column(String(16), default="auto")
    assistant_ref: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    knowledge_base_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    retrieval_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # search method, top_k, filters
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PlaygroundMessage(Base):
    __tablename__ = "genai_playground_messages"
    __table_args__ = (UniqueConstraint("session_id", "message_index", name="uq_genai_playground_message"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_playground_sessions.id", ondelete="CASCADE"), index=True
    )
    message_index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    metadata_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
