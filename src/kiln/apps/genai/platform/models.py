"""Platform control plane: provider instances, deployment profiles, bindings and their resources,
the active deployment and its activation audit. Capabilities and provider families are code
(`platform/families.py`), not rows: they change only with the code that implements them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kiln.core.db import Base, JSONType, UTCDateTime, UUIDStr, new_id, utcnow


class GenaiProviderInstance(Base):
    __tablename__ = "genai_provider_instances"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    provider_key: Mapped[str] = mapped_column(String(64), index=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    endpoint_url: Mapped[str] = mapped_column(String(2048), default="")
    healthcheck_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secret_refs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The local loaded-model slot (loaded_managed_model_id, load_state, ...).
    slot: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiDeployment(Base):
    __tablename__ = "genai_deployments"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    updated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class GenaiDeploymentBinding(Base):
    __tablename__ = "genai_deployment_bindings"
    __table_args__ = (UniqueConstraint("deployment_id", "capability_key", name="uq_genai_binding_capability"),)

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    deployment_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_deployments.id", ondelete="CASCADE"), index=True
    )
    capability_key: Mapped[str] = mapped_column(String(64))
    provider_instance_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_provider_instances.id", ondelete="RESTRICT"), index=True
    )
    binding_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    resource_policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class GenaiBindingResource(Base):
    __tablename__ = "genai_binding_resources"

    binding_id: Mapped[str] = mapped_column(
        UUIDStr(), ForeignKey("genai_deployment_bindings.id", ondelete="CASCADE"), primary_key=True
    )
    resource_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource_kind: Mapped[str] = mapped_column(String(32))
    ref_type: Mapped[str] = mapped_column(String(32))
    managed_model_id: Mapped[str | None] = mapped_column(String(200), default=None, index=True)
    knowledge_base_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None, index=True)
    provider_resource_id: Mapped[str | None] = mapped_column(String(512), default=None)
    display_name: Mapped[str | None] = mapped_column(String(255), default=None)
    resource_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)


class GenaiActiveDeployment(Base):
    __tablename__ = "genai_active_deployment"

    singleton_key: Mapped[str] = mapped_column(String(16), primary_key=True, default="active")
    deployment_id: Mapped[str] = mapped_column(UUIDStr(), ForeignKey("genai_deployments.id", ondelete="RESTRICT"))
    previous_deployment_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    activated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GenaiActivationAudit(Base):
    __tablename__ = "genai_activation_audit"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_id)
    deployment_id: Mapped[str] = mapped_column(UUIDStr(), index=True)
    previous_deployment_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    activated_by_user_id: Mapped[str | None] = mapped_column(UUIDStr(), default=None)
    activated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
