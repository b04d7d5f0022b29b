"""The worker fleet as the dashboard shows it (the engine's worker slots), and dispatch."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.config import media_settings
from kiln.apps.media.models import IN_FLIGHT, UPLOADED, MediaDetection, MediaItem
from kiln.apps.media.processing.status import StatusEvent, transition
from kiln.core.db import utcnow
from kiln.core.jobs import Worker


def cluster_status(active: int, working: int) -> str:
    if working >= 8:
        return "Stressed"
    return "Optimal" if active >= 3 else "Degraded"


async def fleet(kernel: Any, session: AsyncSession, user_id: str) -> dict[str, Any]:
    """The fleet as `user_id` sees it: every worker's state, but the id of the item a worker is
    busy with only when it is that user's (another user's item shows as busy, without its id)."""
    cfg = media_settings(kernel)
    now = utcnow()
    online_after = now - timedelta(seconds=cfg.worker_offline_seconds)
    today = now.date().isoformat()
    # The configured slot order (Helios first), then any distributed workers by name.
    order = {name: i for i, name in enumerate(kernel.settings.worker_names)}
    workers = sorted(await session.scalars(select(Worker)), key=lambda w: (order.get(w.name, len(order)), w.name))
    tasks = {
        row.worker_name: row
        for row in (
            await session.execute(
                select(MediaItem.worker_name, MediaItem.id, MediaItem.status, MediaItem.user_id)
                .where(MediaItem.status.in_(IN_FLIGHT), MediaItem.worker_name.is_not(None))
                .order_by(MediaItem.updated_at)
            )
        ).all()
    }
    nodes, active, working = [], 0, 0
    for w in workers:
        online = w.status != "offline" and w.heartbeat_at is not None and w.heartbeat_at >= online_after
        status = ("Working" if w.status == "busy" else "Active") if online else "Offline"
        active += status != "Offline"
        working += status == "Working"
        task = tasks.get(w.name)
        nodes.append(
            {
                "name": w.name,
                "status": status,
                "tasks_processed_today": w.jobs_done_today if w.jobs_done_day == today else 0,
                "current_task_id": task.id if task is not None and task.user_id == user_id else None,
                "current_task_status": task.status if task else None,
                "last_ping": w.heartbeat_at.isoformat() if w.heartbeat_at else None,
            }
        )
    queue_depth = await session.scalar(select(func.count()).select_from(MediaItem).where(MediaItem.status == UPLOADED))
    return {
        "total_active_fleet": active,
        "cluster_status": cluster_status(active, working),
        "nodes": nodes,
        "queue_depth": int(queue_depth or 0),
        "last_updated": now.isoformat(),
    }


class DispatchRefused(Exception):
    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code, self.detail = status_code, detail


async def dispatch(
    kernel: Any, session: AsyncSession, user_id: str, media_id: str
) -> tuple[str, StatusEvent | None, int]:
    """Re-queue one of the user's media items for processing; returns (job id, event, queue size)."""
    item = await session.scalar(select(MediaItem).where(MediaItem.id == media_id, MediaItem.user_id == user_id))
    if item is None:
        raise DispatchRefused(404, "Media not found")
    if item.status in IN_FLIGHT:
        raise DispatchRefused(409, f"Media is being processed ({item.status}); wait for it to finish")
    if item.status == "PENDING":
        raise DispatchRefused(409, "Media upload has not completed")
    job = await kernel.jobs.create(
        session,
        "media.process",
        {"media_id": item.id},
        owner_id=user_id,
        max_attempts=media_settings(kernel).max_attempts,
    )
    await session.execute(delete(MediaDetection).where(MediaDetection.media_id == item.id))
    event = await transition(
        session,
        item,
        UPLOADED,
        detail="dispatched",
        values={
            "job_id": job.id,
            "attempts": 0,
            "worker_name": None,
            "error": None,
            "has_trash": False,
            "confidence": None,
        },
    )
    await session.commit()
    await kernel.jobs.kick(job.id)
    queue = await session.scalar(select(func.count()).select_from(MediaItem).where(MediaItem.status == UPLOADED))
    return job.id, event, int(queue or 0)
