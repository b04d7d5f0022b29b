"""Policy rules (allow/deny per scope and resource; user-scoped rules are evaluated)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class GenaiPolicyRule(Base):
    __tablename__ = "genai_policy_rules"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    scope_type: Mapped[str] = mapped_column(String(16), index=True)
    scope_id: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32), default="entity")
    resource_id: Mapped[str] = mapped_column(String(200), default="*")
    effect: Mapped[str] = mapped_column(String(8))
    rule: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
