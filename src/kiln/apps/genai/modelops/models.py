"""ModelOps tables: managed models, their test runs and validations, saved provider credentials
(encrypted at rest), role-scope sharing, daily usage, Hugging Face downloads."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class GenaiCredential(Base):
    __tablename__ = "genai_credentials"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    owner_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None, index=True)
    credential_scope: Mapped[str] = mapped_column(String(16), default="personal")
    provider_slug: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    api_base_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_key_last4: Mapped[str] = mapped_column(String(8), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiModel(Base):
    __tablename__ = "genai_models"

    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(64), default="local")
    name: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(64))
    task_key: Mapped[str] = mapped_column(String(64), default="llm")
    category: Mapped[str] = mapped_column(String(16), default="generative")
    backend_kind: Mapped[str] = mapped_column(String(16))
    hosting_kind: Mapped[str] = mapped_column(String(16))
    source_kind: Mapped[str] = mapped_column(String(32))
    availability: Mapped[str] = mapped_column(String(16))
    runtime_mode_policy: Mapped[str] = mapped_column(String(16))
    lifecycle_state: Mapped[str] = mapped_column(String(16), default="registered", index=True)
    visibility_scope: Mapped[str] = mapped_column(String(16), default="platform")
    owner_type: Mapped[str] = mapped_column(String(16), default="platform")
    owner_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None, index=True)
    provider_model_id: Mapped[str | None] = mapped_column(String(255), default=None)
    credential_id: Mapped[str | None] = mapped_column(
        UUIDStr(), ForeignKey("genai_credentials.id", ondelete="SET NULL"), default=None
    )
    source_id: Mapped[str | None] = mapped_column(String(255), default=None)
    local_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    status: Mapped[str] = mapped_column(String(16), default="available")
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    is_validation_current: Mapped[bool] = mapped_column(Boolean, default=False)
    last_validation_status: Mapped[str | None] = mapped_column(String(16), default=None)
    last_validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_validation_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_validation_config_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    revision: Mapped[str | None] = mapped_column(String(128), default=None)
    checksum: Mapped[str | None] = mapped_column(String(128), default=None)
    model_size_billion: Mapped[float | None] = mapped_column(Float, default=None)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    model_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiModelTestRun(Base):
    __tablename__ = "genai_model_test_runs"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("genai_models.model_id", ondelete="CASCADE"), index=True
    )
    task_key: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")
    input_payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    output_payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error_details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    latency_ms: Mapped[float | None] = mapped_column(Float, default=None)
    config_fingerprint: Mapped[str] = mapped_column(String(64))
    tested_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GenaiModelValidation(Base):
    __tablename__ = "genai_model_validations"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    model_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("genai_models.model_id", ondelete="CASCADE"), index=True
    )
    validator_kind: Mapped[str] = mapped_column(String(32), default="test_run")
    trigger_reason: Mapped[str] = mapped_column(String(64), default="manual")
    result: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text, default="")
    error_details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    config_fingerprint: Mapped[str] = mapped_column(String(64))
    validated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GenaiModelScope(Base):
    """Role-scope sharing (`GET/PUT /v1/modelops/sharing`): scope (a role) → model ids."""

    __tablename__ = "genai_model_scopes"

    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    model_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiModelUsage(Base):
    __tablename__ = "genai_model_usage"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)


class GenaiDownload(Base):
    __tablename__ = "genai_downloads"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(32), default="huggingface")
    source_id: Mapped[str] = mapped_column(String(255))
    target_dir: Mapped[str] = mapped_column(String(1024))
    model_id: Mapped[str | None] = mapped_column(String(200), default=None)
    job_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None, index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
