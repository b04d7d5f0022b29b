"""Rows -> the contract's JSON shapes (one function per shape, no queries here)."""

from __future__ import annotations

from typing import Any

from kiln.apps.robotics.common import iso
from kiln.apps.robotics.models import Asset, AssetMetadata, ConversionRun, OutputArtifact, Tag
from kiln.core.jobs.models import Job

JOB_TYPES = {"robotics.index": "index", "robotics.convert": "convert"}
JOB_KINDS = {v: k for k, v in JOB_TYPES.items()}


def asset_summary(a: Asset) -> dict[str, Any]:
    return {
        "id": a.id,
        "file_path": a.file_path,
        "file_name": a.file_name,
        "file_type": a.file_type,
        "file_size": a.file_size,
        "registered_time": iso(a.registered_at),
        "indexing_status": a.indexing_status,
        "last_indexed_time": iso(a.last_indexed_at),
    }


def tag_view(t: Tag) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "created_at": iso(t.created_at)}


def asset_list_item(a: Asset, tags: list[Tag]) -> dict[str, Any]:
    return {**asset_summary(a), "tags": [tag_view(t) for t in tags]}


def metadata_view(m: AssetMetadata | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "default_episode": m.default_episode,
        "duration": m.duration,
        "end_time": iso(m.end_time),
        "indexing_error": m.indexing_error,
        "message_count": m.message_count,
        "raw_metadata": m.raw_metadata or {},
        "sensor_types": m.sensor_types or [],
        "start_time": iso(m.start_time),
        "topic_count": m.topic_count,
        "topics": m.topics or [],
    }


def job_view(job: Job) -> dict[str, Any]:
    payload = job.payload or {}
    config = dict(payload.get("config") or {})
    config.pop("max_workers", None)
    return {
        "id": job.id,
        "type": JOB_TYPES.get(job.kind, job.kind),
        "status": job.status,
        "target_asset_ids_json": list(payload.get("target_asset_ids") or []),
        "config_json": config,
        # jobs pass the stored policy through (key `effective_image_payload_contract`)
        "representation_policy": config.get("representation_policy"),
        "output_path": config.get("output_path"),
        "error_message": job.error,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        # engine extensions: live progress, attempts, cancellation
        "progress": job.progress,
        "progress_message": job.progress_message,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "cancel_requested_at": iso(job.cancel_requested_at),
        "conversion_id": payload.get("run_id"),
    }


def policy_for_response(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Conversion payloads name the contract `image_payload_contract` (jobs keep the stored key)."""
    if stored is None:
        return None
    out = dict(stored)
    if "effective_image_payload_contract" in out:
        out["image_payload_contract"] = out.pop("effective_image_payload_contract")
    return out


def run_status(job: Job | None) -> str:
    return job.status if job is not None else "failed"


def conversion_summary(run: ConversionRun, job: Job | None) -> dict[str, Any]:
    return {
        "id": run.id,
        "job_id": run.job_id,
        "status": run_status(job),
        "asset_ids": list(run.asset_ids or []),
        "config": run.config,
        "output_path": run.output_dir,
        "error_message": job.error if job is not None else "the conversion job no longer exists",
        "representation_policy": policy_for_response((run.config or {}).get("representation_policy")),
        "created_at": iso(run.created_at),
        "updated_at": iso(max(run.updated_at, job.updated_at) if job is not None else run.updated_at),
        "progress": job.progress if job is not None else None,
    }


def output_summary(o: OutputArtifact, run: ConversionRun | None, root_path: str = "") -> dict[str, Any]:
    """`root_path` is the prefix the request came in on (e.g. `/robotics`), so `content_url` works
    under any mount."""
    asset_ids = [o.source_asset_id] if o.source_asset_id else list(run.asset_ids or []) if run else []
    return {
        "id": o.id,
        "conversion_id": o.conversion_run_id,
        "job_id": run.job_id if run else None,
        "asset_ids": asset_ids,
        "relative_path": o.relative_path,
        "file_name": o.file_name,
        "format": o.format,
        "role": o.role,
        "media_type": o.media_type,
        "size_bytes": o.size_bytes,
        "availability_status": o.availability_status,
        "metadata": o.metadata_json or {},
        "content_url": f"{root_path}/outputs/{o.id}/content",
        "created_at": iso(o.created_at),
        "updated_at": iso(o.updated_at),
    }


def output_detail(o: OutputArtifact, run: ConversionRun | None, root_path: str = "") -> dict[str, Any]:
    return {**output_summary(o, run, root_path), "file_path": o.output_path}
