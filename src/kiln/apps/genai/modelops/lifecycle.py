"""Managed models: create, list, register → (test → validate) → activate / deactivate / unregister /
delete, with the eligibility rules of §3.6, and the configuration fingerprint that ties a test run
to the configuration it tested."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import GenaiSettings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.access import model_for, visibility_clause
from kiln.apps.genai.modelops.models import GenaiCredential, GenaiModel
from kiln.apps.genai.platform.models import GenaiBindingResource
from kiln.apps.genai.runtime.service import is_offline
from kiln.core.auth import User

MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")
CAPABILITY_TASK = {"llm_inference": "llm", "embeddings": "embeddings"}
MAX_METADATA_BYTES = 16 * 1024


def missing(message: str) -> GenaiError:
    return GenaiError(400, "missing_config", message)


def fingerprint(model: GenaiModel) -> str:
    fields = [
        model.provider,
        model.provider_model_id,
        model.source_id,
        model.local_path,
        model.backend_kind,
        model.availability,
        model.credential_id,
        model.task_key,
        model.hosting_kind,
        model.checksum,
        model.revision,
        model.model_metadata or {},
    ]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


async def usable_credential(session: AsyncSession, user: User, credential_id: str) -> GenaiCredential:
    row = await session.get(GenaiCredential, credential_id) if len(credential_id) <= 64 else None
    allowed = row is not None and (
        row.owner_user_id == user.id or (row.credential_scope == "platform" and user.role == "superadmin")
    )
    if not allowed or not row.is_active or row.revoked_at is not None:
        raise missing("Active credential not found")
    return row


async def create_model(session: AsyncSession, user: User, body: dict[str, Any]) -> GenaiModel:
    model_id = str(body.get("id") or body.get("model_id") or "").strip()
    name = str(body.get("name") or "").strip()
    if not model_id or not name:
        raise missing("id and name are required")
    if not MODEL_ID.match(model_id) or len(name) > 255:
        raise GenaiError(400, "invalid_model_id", "id: letters, digits and ._:/@+- (max 200); name max 255")
    owner_type = str(body.get("owner_type") or ("platform" if user.role == "superadmin" else "user"))
    if owner_type not in ("platform", "user"):
        raise missing("owner_type must be platform or user")
    if owner_type == "platform" and user.role != "superadmin":
        raise GenaiError(403, "forbidden", "Only superadmin can create platform-owned models")
    backend = str(body.get("backend") or "external_api")
    if backend not in ("local", "external_api"):
        raise missing("backend must be local or external_api")
    if backend == "local" and owner_type != "platform":
        raise GenaiError(403, "forbidden", "Local models must be platform-owned")
    task_key = str(body.get("task_key") or "").strip()
    if not task_key or len(task_key) > 64:
        raise missing("task_key is required")
    category = str(body.get("category") or ("generative" if task_key == "llm" else "predictive"))
    if category not in ("predictive", "generative"):
        raise missing("category must be predictive or generative")
    visibility = str(body.get("visibility_scope") or ("platform" if owner_type == "platform" else "private"))
    if visibility not in ("private", "user", "group", "platform"):
        raise missing("visibility_scope must be private, user, group, or platform")
    if owner_type == "user" and visibility != "private":
        raise missing("Personal models must use private visibility")
    if owner_type == "platform" and visibility != "platform":
        raise missing("Platform models must use platform visibility")
    provider_model_id = str(body.get("provider_model_id") or "").strip() or None
    if backend == "external_api" and not provider_model_id:
        raise missing("provider_model_id is required for cloud models")
    credential_id = str(body.get("credential_id") or "").strip() or None
    if backend == "external_api" and owner_type == "user" and not credential_id:
        raise missing("credential_id is required for personal cloud models")
    if credential_id:
        await usable_credential(session, user, credential_id)
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or len(json.dumps(metadata, default=str)) > MAX_METADATA_BYTES:
        raise GenaiError(400, "invalid_metadata", "metadata must be an object of at most 16 kB")
    if await session.get(GenaiModel, model_id) is not None:
        raise GenaiError(409, "duplicate_model", f"Model {model_id!r} already exists")
    size = body.get("model_size_billion")
    cloud = backend == "external_api"
    model = GenaiModel(
        model_id=model_id,
        name=name,
        provider=str(body.get("provider") or "openai_compatible")[:64],
        task_key=task_key,
        category=category,
        backend_kind=backend,
        hosting_kind="cloud" if cloud else "local",
        source_kind=str(body.get("source") or ("external_provider" if cloud else "local_folder"))[:32],
        availability=str(body.get("availability") or ("online_only" if cloud else "offline_ready")),
        runtime_mode_policy="online_only" if cloud else "online_offline",
        lifecycle_state="registered",
        visibility_scope=visibility,
        owner_type=owner_type,
        owner_user_id=user.id if owner_type == "user" else None,
        provider_model_id=provider_model_id,
        credential_id=credential_id,
        source_id=str(body.get("source_id") or "")[:255] or None,
        local_path=str(body.get("local_path") or "")[:1024] or None,
        model_size_billion=float(size) if isinstance(size, int | float) else None,
        comment=str(body.get("comment") or "")[:4000] or None,
        model_metadata=metadata,
        created_by_user_id=user.id,
    )
    if model.availability not in ("online_only", "offline_ready"):
        raise missing("availability must be online_only or offline_ready")
    session.add(model)
    await session.flush()
    return model


async def list_models(
    session: AsyncSession, settings: GenaiSettings, user: User, *, eligible: bool = False, capability: str | None = None
) -> list[GenaiModel]:
    query = select(GenaiModel).order_by(GenaiModel.name, GenaiModel.model_id)
    clause = await visibility_clause(session, user)
    if clause is not None:
        query = query.where(clause)
    if capability:
        query = query.where(GenaiModel.task_key == CAPABILITY_TASK.get(capability, capability))
    if eligible:
        query = query.where(GenaiModel.lifecycle_state == "active", GenaiModel.is_validation_current.is_(True))
    if (eligible or user.role != "superadmin") and await is_offline(session, settings):
        # Offline, online-only models drop out of pickers and of non-superadmin listings.
        query = query.where(GenaiModel.runtime_mode_policy != "online_only")
    return list((await session.execute(query.limit(1000))).scalars())


def _transition(model: GenaiModel, allowed: set[str], message: str) -> None:
    if model.lifecycle_state not in allowed:
        raise GenaiError(409, "invalid_state_transition", message, {"lifecycle_state": model.lifecycle_state})


async def register(session: AsyncSession, user: User, model_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "register")
    _transition(model, {"created", "unregistered"}, "Model cannot be registered from its current state")
    model.lifecycle_state = "registered"
    await session.flush()
    return model


async def activate(session: AsyncSession, settings: GenaiSettings, user: User, model_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "activate")
    _transition(model, {"registered", "validated", "active", "inactive"}, "Model cannot be activated now")
    if not (model.is_validation_current and model.last_validation_status == "success"):
        raise GenaiError(409, "validation_failed", "Model must be successfully validated before activation")
    if model.runtime_mode_policy == "online_only" and await is_offline(session, settings):
        raise GenaiError(409, "offline_not_allowed", "Cloud models cannot be activated for offline runtime")
    if model.credential_id:
        await usable_credential_any(session, model.credential_id)
    model.lifecycle_state = "active"
    model.is_enabled = True
    await session.flush()
    return model


async def usable_credential_any(session: AsyncSession, credential_id: str) -> GenaiCredential:
    row = await session.get(GenaiCredential, credential_id)
    if row is None or not row.is_active or row.revoked_at is not None:
        raise GenaiError(409, "credential_unavailable", "The model's credential is missing or revoked")
    return row


async def deactivate(session: AsyncSession, user: User, model_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "deactivate")
    _transition(model, {"active", "inactive"}, "Only active models can be deactivated")
    model.lifecycle_state = "inactive"
    model.is_enabled = False
    await session.flush()
    return model


async def unregister(session: AsyncSession, user: User, model_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "unregister")
    if model.lifecycle_state == "active":
        raise GenaiError(409, "invalid_state_transition", "Active models must be deactivated before unregistering")
    model.lifecycle_state = "unregistered"
    model.is_enabled = False
    await session.flush()
    return model


async def delete(session: AsyncSession, user: User, model_id: str) -> None:
    model = await model_for(session, user, model_id, "delete")
    if model.lifecycle_state != "unregistered":
        raise GenaiError(409, "invalid_state_transition", "Model must be unregistered before deletion")
    bound = await session.scalar(
        select(func.count())
        .select_from(GenaiBindingResource)
        .where(GenaiBindingResource.managed_model_id == model.model_id)
    )
    if bound:
        raise GenaiError(409, "dependencies_unsatisfied", "Model is still referenced by a deployment binding")
    await session.delete(model)
    await session.flush()


async def set_credential(session: AsyncSession, user: User, model_id: str, credential_id: str) -> GenaiModel:
    model = await model_for(session, user, model_id, "update")
    if model.backend_kind != "external_api":
        raise GenaiError(409, "credential_not_required", "Only cloud models can be assigned credentials")
    if not credential_id:
        raise missing("credential_id is required")
    await usable_credential(session, user, credential_id)
    model.credential_id = credential_id
    model.is_validation_current = False  # the configuration changed: validate again
    await session.flush()
    return model
