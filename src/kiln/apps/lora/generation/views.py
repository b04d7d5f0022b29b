"""JSON views of generation and delivery jobs in the reference's shapes.

Image URLs are built from the prefix the request came in on (`root_path` + `/v1` or
`/api/v1`), and point at Kiln's own image routes, never base64.
"""

from __future__ import annotations

from typing import Any

from kiln.core.db import iso_or_none as _iso
from kiln.core.jobs import Job

NORMAL = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
RAW = {
    "queued": "pending",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


def image_urls(base: str, job: Job, thumbs: bool = False) -> list[str]:
    result = job.result or {}
    count = len(result.get("images") or []) if isinstance(result, dict) else 0
    kind = "thumbnails" if thumbs else "images"
    return [f"{base}/generation/results/{job.id}/{kind}/{i}" for i in range(count)]


def _params(job: Job) -> dict[str, Any]:
    return dict((job.payload or {}).get("params") or {})


def _message(job: Job) -> str | None:
    result = job.result if isinstance(job.result, dict) else {}
    return job.progress_message or result.get("detail")


def job_status(job: Job) -> dict[str, Any]:
    """`GenerationJobStatus` (progress 0..100, as the reference's jobs/active)."""
    created = _iso(job.created_at)
    return {
        "id": job.id,
        "jobId": job.id,
        "prompt": (job.payload or {}).get("prompt"),
        "status": NORMAL[job.status],
        "progress": round((1.0 if job.status == "succeeded" else job.progress or 0.0) * 100, 2),
        "message": _message(job),
        "error": job.error if job.status == "failed" else None,
        "params": _params(job),
        "created_at": created,
        "startTime": _iso(job.started_at) or created,
        "finished_at": _iso(job.finished_at),
        "result": job.result,
    }


def delivery_read(job: Job, *, normalized: bool, base: str) -> dict[str, Any]:
    payload = job.payload or {}
    result = job.result
    if job.kind == "lora.generate" and isinstance(result, dict):
        result = {**result, "images": image_urls(base, job)}
    if job.status == "failed":
        result = {**(result or {}), "status": "failed", "error": job.error}
    elif job.status == "cancelled":
        result = {"status": "cancelled"}
    params = (
        payload.get("delivery_params")
        if job.kind == "lora.deliver"
        else {
            "generation_params": _params(job),
            "mode": payload.get("mode"),
            "save_images": payload.get("save_images"),
            "return_format": payload.get("return_format"),
            "backend": payload.get("backend"),
        }
    )
    return {
        "id": job.id,
        "prompt": payload.get("prompt"),
        "mode": payload.get("mode_name") or payload.get("backend"),
        "params": params,
        "status": (NORMAL if normalized else RAW)[job.status],
        "result": result,
        "progress": 1.0 if job.status == "succeeded" else job.progress,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def generation_result(job: Job, base: str) -> dict[str, Any]:
    """`SDNextGenerationResult`."""
    result = job.result if isinstance(job.result, dict) else {}
    return {
        "job_id": job.id,
        "status": NORMAL[job.status],
        "images": image_urls(base, job) if job.status == "succeeded" else None,
        "progress": 1.0 if job.status == "succeeded" else job.progress,
        "error_message": job.error if job.status in ("failed", "cancelled") else None,
        "generation_info": result.get("generation_info"),
    }


def failed_result(message: str, job_id: str = "unknown") -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": "failed",
        "images": None,
        "progress": 0.0,
        "error_message": message,
        "generation_info": None,
    }


def result_summary(job: Job, base: str) -> dict[str, Any]:
    """`GenerationResultSummary`."""
    params = _params(job)
    result = job.result if isinstance(job.result, dict) else {}
    info = result.get("generation_info") or {}
    urls, thumbs = image_urls(base, job), image_urls(base, job, thumbs=True)
    seed = info.get("seed") if isinstance(info.get("seed"), int) else params.get("seed")
    return {
        "id": job.id,
        "job_id": job.id,
        "prompt": (job.payload or {}).get("prompt"),
        "negative_prompt": params.get("negative_prompt"),
        "status": NORMAL[job.status],
        "image_url": urls[0] if urls else None,
        "thumbnail_url": thumbs[0] if thumbs else None,
        "images": urls,
        "width": params.get("width"),
        "height": params.get("height"),
        "steps": params.get("steps"),
        "cfg_scale": params.get("cfg_scale"),
        "seed": seed,
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
        "generation_info": info,
        "rating": result.get("rating"),
        "is_favorite": result.get("is_favorite") is True,
        "rating_updated_at": result.get("rating_updated_at"),
        "favorite_updated_at": result.get("favorite_updated_at"),
    }
