"""Agent projects, their versions, and agent executions (`genai_agent_*`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class AgentProject(Base):
    __tablename__ = "genai_agent_projects"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    owner_user_id: Mapped[str] = mapped_column(UUIDStr(), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    current_version: Mapped[int] = mapped_column(Integer, default=1)
    validated_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # last passing validation
    published_agent_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AgentProjectVersion(Base):
    __tablename__ = "genai_agent_project_versions"

    project_id: Mapped[str] = mapped_column(
        String(120), ForeignKey("genai_agent_projects.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AgentExecution(Base):
    __tablename__ = "genai_agent_executions"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    agent_id: Mapped[str] = mapped_column(String(200))
    agent_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    runtime_profile: Mapped[str] = mapped_column(String(16), default="offline")
    requested_by_user_id: Mapped[str] = mapped_column(UUIDStr(), index=True)
    job_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
