"""`/ws/progress`: per-job generation progress in the reference's message protocol.

Server → client: `{"type", "timestamp", "data"}` with types `connected`,
`subscription_confirmed`, `generation_started`, `progress_update` (progress 0..1, status,
current_step, total_steps, eta_seconds, preview_image, error_message), `generation_complete`
(status, image URLs, error_message, total_duration, generation_info) and `pong`.
Client → server: `{"type":"subscribe","job_ids":[...]|null,"include_previews":bool}` (null =
every job), `{"type":"unsubscribe","job_ids":[...]|null}`, `{"type":"ping"}`. Junk frames are
ignored and the socket stays open. Subscribing sends the current state of the named jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy import select

from kiln.apps.lora.config import lora_settings
from kiln.apps.lora.deps import key_allows
from kiln.apps.lora.generation.jobs import PROGRESS_TOPIC
from kiln.apps.lora.generation.service import GENERATE, STARTED_TOPIC
from kiln.apps.lora.generation.spa_ws import spa_message
from kiln.apps.lora.generation.views import NORMAL
from kiln.apps.lora.urls import api_base
from kiln.core.auth.deps import open_surface_guard
from kiln.core.jobs import JOB_UPDATED, Job, job_to_dict

router = APIRouter()
log = logging.getLogger(__name__)
MAX_FRAME = 64 * 1024
MAX_IDS = 1000


def _message(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "timestamp": datetime.now(UTC).isoformat(), "data": data}


class _Subscription:
    def __init__(self) -> None:
        self.all = False
        self.ids: set[str] = set()
        self.previews = False

    def wants(self, job_id: str | None) -> bool:
        return job_id is not None and (self.all or job_id in self.ids)


def _progress_data(job_id: str, progress: float, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = extra or {}
    return {
        "job_id": job_id,
        "progress": progress,
        "status": status,
        "current_step": extra.get("current_step"),
        "total_steps": extra.get("total_steps"),
        "eta_seconds": extra.get("eta_seconds"),
        "preview_image": extra.get("preview_image"),
        "error_message": extra.get("error_message"),
    }


def _from_job(job: dict[str, Any], base: str) -> dict[str, Any]:
    status = job["status"]
    if status in ("queued", "running"):
        return _message("progress_update", _progress_data(job["id"], job.get("progress") or 0.0, NORMAL[status]))
    result = job.get("result") if isinstance(job.get("result"), dict) else {}
    count = len(result.get("images") or [])
    images = [f"{base}/generation/results/{job['id']}/images/{i}" for i in range(count if status == "succeeded" else 0)]
    duration = None
    if job.get("started_at") and job.get("finished_at"):
        started, finished = datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"])
        duration = (finished - started).total_seconds()
    return _message(
        "generation_complete",
        {
            "job_id": job["id"],
            "status": NORMAL[status],
            "images": images,
            "error_message": job.get("error") if status != "succeeded" else None,
            "total_duration": duration,
            "generation_info": result.get("generation_info"),
        },
    )


def _translate(topic: str, data: dict[str, Any], base: str) -> tuple[str | None, dict[str, Any] | None]:
    if topic == STARTED_TOPIC:
        return data.get("job_id"), _message("generation_started", data)
    if topic == PROGRESS_TOPIC:
        return data.get("job_id"), _message(
            "progress_update", _progress_data(data["job_id"], data.get("progress", 0.0), "processing", data)
        )
    if topic == JOB_UPDATED and data.get("kind") == GENERATE:
        return data.get("id"), _from_job(data, base)
    return None, None


async def _snapshot(websocket: WebSocket, ids: list[str], base: str) -> list[dict[str, Any]]:
    if not ids:
        return []
    kernel = websocket.app.state.kernel
    async with kernel.db.session() as session:
        jobs = (await session.scalars(select(Job).where(Job.id.in_(ids), Job.kind == GENERATE))).all()
    return [_from_job(job_to_dict(job), base) for job in jobs]


def _ids(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str) and 0 < len(v) <= 64][:MAX_IDS]


@router.websocket("/ws/progress")
@router.websocket("/generation/ws/progress")  # where the SPA looks for it (its generation base + /ws/progress)
async def progress_socket(websocket: WebSocket) -> None:
    kernel = websocket.app.state.kernel
    await open_surface_guard(websocket)
    if not await key_allows(websocket, lora_settings(kernel)):
        await websocket.close(code=1008, reason="Invalid API Key")
        return
    await websocket.accept()
    base = api_base(websocket)
    sub = _Subscription()
    # The SPA's path: it never subscribes and reads its own flat messages (spa_ws).
    spa = websocket.scope.get("path", "").endswith("/generation/ws/progress")
    sub.all = spa
    send_lock = asyncio.Lock()

    async def send(message: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(message, separators=(",", ":"), default=str))

    await send(
        _message(
            "connected", {"connection_id": f"conn_{id(websocket):x}", "message": "Connected to progress monitoring"}
        )
    )

    async def pump(stream: Any) -> None:
        async for topic, data in stream:
            try:
                job_id, message = _translate(topic, data, base)
            except (KeyError, TypeError, ValueError):
                log.warning("lora ws: event %s not translatable", topic)
                continue
            if message is not None and sub.wants(job_id):
                if message["type"] == "progress_update" and not sub.previews:
                    message["data"]["preview_image"] = None
                await send(spa_message(message, data if topic == JOB_UPDATED else None) if spa else message)

    async def receive() -> None:
        while True:
            raw = await websocket.receive_text()
            if len(raw) > MAX_FRAME:
                continue
            try:
                frame = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(frame, dict):
                continue
            kind = frame.get("type")
            if kind == "subscribe":
                ids = _ids(frame.get("job_ids"))
                if ids is None:
                    sub.all = True
                else:
                    sub.ids.update(ids)
                sub.previews = frame.get("include_previews") is True
                await send(_message("subscription_confirmed", {"job_ids": ids}))
                for message in await _snapshot(websocket, ids or [], base):
                    await send(message)
            elif kind == "unsubscribe":
                ids = _ids(frame.get("job_ids"))
                if ids is None:
                    sub.all, sub.ids = False, set()
                else:
                    sub.ids.difference_update(ids)
                await send(_message("unsubscribed", {"job_ids": ids}))
            elif kind == "ping":
                await send(_message("pong", {}))

    async with kernel.events.subscribe(JOB_UPDATED, PROGRESS_TOPIC, STARTED_TOPIC) as stream:
        tasks = [asyncio.create_task(pump(stream)), asyncio.create_task(receive())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await websocket.close()
