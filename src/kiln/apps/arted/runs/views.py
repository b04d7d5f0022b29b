"""JSON views of runs: the execute answer, recorder status and entities, history records.

URLs carry the prefix the request came in on (`root`, from `request.scope["root_path"]`).
"""

from __future__ import annotations

from typing import Any

from kiln.apps.arted.models import COMPLETED, FAILED, IN_PROGRESS, QUEUED, Run
from kiln.core.db import iso_or_none as iso
from kiln.core.db import utcnow

EXPECTED = ["input", "safety", "interception", "translation", "safety_pre_output", "output"]
PUBLIC_STATUS = {QUEUED: IN_PROGRESS, IN_PROGRESS: IN_PROGRESS, COMPLETED: COMPLETED, FAILED: FAILED}


def _elapsed(run: Run) -> float | None:
    if run.started_at is None:
        return None
    end = run.finished_at or utcnow()
    return round((end - run.started_at).total_seconds(), 3)


def media_url(root: str, output: dict[str, Any]) -> str:
    return f"{root}/api/media/{output.get('kind', 'image')}/{output.get('run_id')}"


def outputs_view(root: str, run: Run) -> list[dict[str, Any]]:
    out = []
    for output in run.outputs or []:
        view = {k: v for k, v in output.items() if k not in ("http_status", "kind", "entity_sequence")}
        if output.get("status") == "success":
            view["url"] = media_url(root, output)
        out.append(view)
    return out


def execute_response(root: str, run: Run, config_name: str) -> dict[str, Any]:
    outputs = outputs_view(root, run)
    body: dict[str, Any] = {
        "status": "success",
        "run_id": run.id,
        "schema": run.config_id,
        "config_name": config_name,
        "input_text": run.input_text,
        "final_output": run.final_output,
        "execution_mode": run.execution_mode,
        "safety_level": run.safety_level,
        "execution_time": run.total_execution_time,
        "outputs_generated": sum(o.get("status") == "success" for o in outputs),
        "backend_info": run.backend_info or [],
        "used_seed": run.used_seed,
    }
    if len(outputs) == 1:
        body["media_output"] = outputs[0]
    elif outputs:
        body["media_outputs"] = outputs
        body["media_output_count"] = len(outputs)
    return body


def status_view(run: Run) -> dict[str, Any]:
    status = PUBLIC_STATUS.get(run.status, run.status)
    body = {
        "run_id": run.id,
        "status": status,
        "current_stage": run.current_stage,
        "current_step": run.current_step,
        "progress": f"{min(run.entity_count, 6)}/6",
        "start_time": iso(run.started_at or run.created_at),
        "elapsed_time": _elapsed(run),
        "end_time": iso(run.finished_at),
    }
    if run.status == QUEUED:
        body["queued"] = True
    if run.error:
        body["error"] = {k: v for k, v in run.error.items() if k != "http_status"}
    return body


def entity_brief(entity: dict[str, Any]) -> dict[str, Any]:
    """An entity as its `arted.run` event shows it (the recorder announces each one)."""
    return {
        "sequence": f"{entity['sequence']:02d}",
        "type": entity["type"],
        "filename": entity["filename"],
        "available": True,
        "mime_type": entity["mime_type"].split(";")[0],
        "size": entity["size"],
    }


def entity_view(root: str, run_id: str, entity: dict[str, Any]) -> dict[str, Any]:
    return {
        **entity_brief(entity),
        "timestamp": entity.get("created_at"),
        "metadata": entity.get("meta") or {},
        "url": f"{root}/api/pipeline/{run_id}/entity/{entity['type']}",
    }


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "execution_id": run.id,
        "run_id": run.id,
        "config_name": run.config_id,
        "timestamp": iso(run.created_at),
        "execution_mode": run.execution_mode,
        "safety_level": run.safety_level,
        "total_execution_time": run.total_execution_time,
        "items_count": run.items_count,
        "user_id": run.user_id,
        "session_id": run.session_id,
        "status": PUBLIC_STATUS.get(run.status, run.status),
        "used_seed": run.used_seed,
        "taxonomy_version": "1.0",
    }


def record_view(root: str, run: Run) -> dict[str, Any]:
    body = run_summary(run)
    body["input_text"] = run.input_text
    body["final_output"] = run.final_output
    body["outputs"] = outputs_view(root, run)
    body["items"] = [dict(item) for item in run.items or []]
    for entry in body["items"]:
        if str(entry.get("item_type", "")).startswith("output_"):
            entry["file_path"] = f"{root}/api/media/{entry['media_type']}/{run.id}"
    return body
