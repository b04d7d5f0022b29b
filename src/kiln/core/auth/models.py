"""Tables of the one user store every surface shares."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, UTCDateTime, UUIDStr, new_id, utcnow

ROLES = ("user", "admin", "superadmin")
"""Lowest to highest; a role includes every role before it."""

ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin', 'superadmin')", name="role"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    # Stored lower-cased so the unique index is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(String(320), unique=True, index=True)
    # Optional second login name (the genai contract logs in by email or username).
    username: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, default=None)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(255), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default="en")
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    def has_role(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]

    def __repr__(self) -> str:  # no hash in reprs that may end up in logs
        return f"User(id={self.id!r}, email={self.email!r}, role={self.role!r}, active={self.is_active})"


class RevokedToken(Base):
    """A logged-out JWT, keyed by its `jti`; kept only until the token would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    # No foreign key: revoking a token of a since-deleted user must not fail.
    user_id: Mapped[str] = mapped_column(UUIDStr(), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A long-lived token for scripts; only the SHA-256 of its secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Comma-separated surfaces the token opens (`robotics,lora`); NULL opens every surface.
    scopes: Mapped[str | None] = mapped_column(String(255), default=None)

    @property
    def scope_set(self) -> frozenset[str] | None:
        """The surfaces this token is limited to, or None for all of them."""
        return frozenset(self.scopes.split(",")) if self.scopes else None

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, user_id={self.user_id!r}, prefix={self.prefix!r})"
