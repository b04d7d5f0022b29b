"""Generic registry (agents, tools, legacy models): entities, versioned specs, shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class GenaiRegistryEntity(Base):
    __tablename__ = "genai_registry_entities"

    entity_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(16), index=True)
    owner_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None, index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiRegistryVersion(Base):
    __tablename__ = "genai_registry_versions"
    __table_args__ = (UniqueConstraint("entity_id", "version", name="uq_genai_registry_version"),)

    version_id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    entity_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("genai_registry_entities.entity_id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GenaiEntityShare(Base):
    __tablename__ = "genai_entity_shares"
    __table_args__ = (UniqueConstraint("entity_id", "grantee_type", "grantee_id", "permission", name="uq_genai_share"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    entity_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("genai_registry_entities.entity_id", ondelete="CASCADE"), index=True
    )
    grantee_type: Mapped[str] = mapped_column(String(16))
    grantee_id: Mapped[str | None] = mapped_column(String(64), default=None)
    permission: Mapped[str] = mapped_column(String(16))
    shared_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
