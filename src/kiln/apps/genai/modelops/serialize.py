"""Response shapes of ModelOps (the reference's field names)."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.modelops.models import GenaiCredential, GenaiModel, GenaiModelTestRun, GenaiModelValidation
from kiln.core.db import iso_or_none as _iso


def credential_summary(model: GenaiModel, credential: GenaiCredential | None) -> dict[str, Any]:
    if model.backend_kind != "external_api" or (model.owner_type == "platform" and not model.credential_id):
        status = "not_required"
    elif credential is None:
        status = "missing"
    else:
        status = "active" if credential.is_active and credential.revoked_at is None else "revoked"
    return {
        "id": model.credential_id,
        "status": status,
        "provider": credential.provider_slug if credential else None,
        "display_name": credential.display_name if credential else None,
        "credential_scope": credential.credential_scope if credential else None,
        "api_base_url": credential.api_base_url if credential else None,
        "api_key_last4": credential.api_key_last4 if credential else None,
        "revoked_at": _iso(credential.revoked_at) if credential else None,
    }


def model_dto(
    model: GenaiModel, credential: GenaiCredential | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": model.model_id,
        "global_model_id": f"{model.node_id}:{model.model_id}",
        "node_id": model.node_id,
        "name": model.name,
        "provider": model.provider,
        "provider_model_id": model.provider_model_id,
        "backend": model.backend_kind,
        "hosting": model.hosting_kind,
        "owner_type": model.owner_type,
        "owner_user_id": model.owner_user_id,
        "source_kind": model.source_kind,
        "source": model.source_kind,
        "source_id": model.source_id,
        "local_path": model.local_path,
        "availability": model.availability,
        "runtime_mode_policy": model.runtime_mode_policy,
        "visibility_scope": model.visibility_scope,
        "task_key": model.task_key,
        "category": model.category,
        "lifecycle_state": model.lifecycle_state,
        "status": model.status,
        "is_enabled": model.is_enabled,
        "is_validation_current": bool(model.is_validation_current),
        "last_validation_status": model.last_validation_status,
        "last_validated_at": _iso(model.last_validated_at),
        "validation_error": {"message": model.last_validation_error} if model.last_validation_error else {},
        "revision": model.revision,
        "checksum": model.checksum,
        "model_size_billion": model.model_size_billion,
        "comment": model.comment,
        "metadata": model.model_metadata or {},
        "artifact": {
            "storage_path": model.local_path,
            "artifact_status": "ready" if model.local_path else None,
            "checksum": model.checksum,
            "provenance": model.source_kind,
        },
        "credential": credential_summary(model, credential),
        "usage_summary": usage or {"total_requests": 0, "metrics": {}},
        "created_at": _iso(model.created_at),
        "updated_at": _iso(model.updated_at),
    }


def test_run_dto(run: GenaiModelTestRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "model_id": run.model_id,
        "task_key": run.task_key,
        "result": run.result,
        "summary": run.summary,
        "input_payload": run.input_payload or {},
        "output_payload": run.output_payload or {},
        "error_details": run.error_details or {},
        "latency_ms": run.latency_ms,
        "config_fingerprint": run.config_fingerprint,
        "tested_by_user_id": run.tested_by_user_id,
        "created_at": _iso(run.created_at),
    }


def validation_dto(row: GenaiModelValidation) -> dict[str, Any]:
    return {
        "id": row.id,
        "model_id": row.model_id,
        "validator_kind": row.validator_kind,
        "trigger_reason": row.trigger_reason,
        "result": row.result,
        "summary": row.summary,
        "error_details": row.error_details or {},
        "config_fingerprint": row.config_fingerprint,
        "validated_by_user_id": row.validated_by_user_id,
        "created_at": _iso(row.created_at),
    }
