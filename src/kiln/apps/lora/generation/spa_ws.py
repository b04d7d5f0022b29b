"""The reference SPA's dialect of the progress socket (served at `/generation/ws/progress`).

The SPA never subscribes and reads flat messages: `generation_progress` {job_id, progress,
status, current_step, total_steps, ...}, `generation_complete` {job_id, status, images,
image_url, result_id, prompt, width, height, steps, cfg_scale, seed, created_at, ...} (it adds
the result to its gallery) and `generation_error` {job_id, error, status} for a failed or
cancelled job. The contract's `/ws/progress` is unchanged.
"""

from __future__ import annotations

from typing import Any


def spa_message(message: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """The SPA's form of one contract message; `job` is the engine job behind a completion."""
    kind, data = message["type"], dict(message.get("data") or {})
    if kind == "progress_update":
        return {"type": "generation_progress", **data}
    if kind != "generation_complete":
        return {"type": kind, **data}
    if data.get("status") != "completed":
        error = (
            "Generation cancelled"
            if data.get("status") == "cancelled"
            else data.get("error_message") or "Generation failed"
        )
        return {"type": "generation_error", "job_id": data.get("job_id"), "error": error, "status": data.get("status")}
    payload = (job or {}).get("payload") or {}
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    info = data.get("generation_info") if isinstance(data.get("generation_info"), dict) else {}
    images = data.get("images") or []
    seed = info.get("seed") if isinstance(info.get("seed"), int) else params.get("seed")
    return {
        "type": "generation_complete",
        **data,
        "result_id": data.get("job_id"),
        "image_url": images[0] if images else None,
        "prompt": payload.get("prompt"),
        "negative_prompt": params.get("negative_prompt"),
        "width": params.get("width"),
        "height": params.get("height"),
        "steps": params.get("steps"),
        "cfg_scale": params.get("cfg_scale"),
        "seed": seed,
        "created_at": (job or {}).get("created_at"),
    }
