"""The reaper: recovers media stuck in the pipeline. Runs at start-up and then on a timer.

Rules (thresholds in MediaSettings; `now` is injectable for tests):
1. PENDING untouched for `pending_timeout` (an upload that never finished) -> FAILED, with the
   step inferred from the newest log line.
2. EXTRACTING/PROCESSING on a worker that is offline (no heartbeat for `worker_offline_seconds`,
   the same threshold the dashboard uses) -> back to UPLOADED ("reaper recovery") and re-queued.
3. UPLOADED untouched for `uploaded_timeout` whose job is no longer queued or running -> a new job.
An item that has used its attempts is failed instead of re-queued, so a poison image cannot loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.config import media_settings
from kiln.apps.media.models import FAILED, IN_FLIGHT, PENDING, UPLOADED, MediaItem, MediaTaskLog
from kiln.apps.media.processing.status import StatusEvent, publish_all, transition
from kiln.core.db import utcnow
from kiln.core.jobs import QUEUED, RUNNING, Job, Worker

clock: Callable[[], datetime] = utcnow


def infer_step(last_message: str | None) -> str:
    if last_message is None:
        return "during upload transfer"
    if "UPLOADED" in last_message:
        return "during status persistence after upload"
    if "PENDING" in last_message:
        return "during upload transfer"
    if "FAILED" in last_message:
        return "while recovering from previous failure"
    return "at unknown pipeline step"


async def _last_log(session: AsyncSession, media_id: str) -> str | None:
    return await session.scalar(
        select(MediaTaskLog.message).where(MediaTaskLog.media_id == media_id).order_by(MediaTaskLog.at.desc()).limit(1)
    )


async def _requeue(
    kernel: Any, session: AsyncSession, item: MediaItem, max_attempts: int, now: datetime, kicks: list[str]
) -> StatusEvent | None:
    """Give an UPLOADED item a live job; fail it when it has used its attempts."""
    if item.attempts >= max_attempts:
        return await transition(
            session,
            item,
            FAILED,
            detail=f"reaper: gave up after {item.attempts} attempts",
            expect=(UPLOADED,),
            values={"error": "too many attempts"},
            at=now,
        )
    job = await session.get(Job, item.job_id) if item.job_id else None
    if job is not None and job.status == QUEUED:
        kicks.append(job.id)
    elif job is None or job.status != RUNNING:
        # A running job is the engine's to recover; anything finished needs a fresh one.
        job = await kernel.jobs.create(session, "media.process", {"media_id": item.id}, owner_id=item.user_id)
        item.job_id = job.id
        kicks.append(job.id)
    return None


async def _fail_pending(session: AsyncSession, cutoff: datetime, now: datetime, why: str) -> list[StatusEvent | None]:
    """PENDING items not touched since `cutoff` -> FAILED (the upload never completed)."""
    events: list[StatusEvent | None] = []
    stale = (
        await session.scalars(select(MediaItem).where(MediaItem.status == PENDING, MediaItem.updated_at <= cutoff))
    ).all()
    for item in stale:
        last = await _last_log(session, item.id)
        detail = f"{why}: failed {infer_step(last)} (last log: {last or 'none'})"
        events.append(
            await transition(
                session,
                item,
                FAILED,
                detail=detail,
                expect=(PENDING,),
                values={"worker_name": None, "error": "upload did not complete"},
                at=now,
            )
        )
    return events


async def fail_interrupted_uploads(kernel: Any) -> int:
    """Start-up of an embedded server: every PENDING upload was cut off when the last process ended."""
    now = clock()
    async with kernel.db.session() as session:
        events = await _fail_pending(session, now, now, "upload interrupted by a restart")
        await session.commit()
    await publish_all(kernel.events, events)
    return sum(event is not None for event in events)


async def reap(kernel: Any, now: datetime | None = None) -> dict[str, int]:
    cfg = media_settings(kernel)
    now = now or clock()
    events: list[StatusEvent | None] = []
    kicks: list[str] = []
    counts = {"failed_pending": 0, "recovered": 0, "requeued": 0}
    async with kernel.db.session() as session:
        failed = await _fail_pending(
            session, now - timedelta(seconds=cfg.pending_timeout_seconds), now, "reaper pending timeout"
        )
        counts["failed_pending"] = sum(event is not None for event in failed)
        events += failed

        offline_before = now - timedelta(seconds=cfg.worker_offline_seconds)
        workers = {w.name: w for w in (await session.scalars(select(Worker))).all()}
        in_flight = (await session.scalars(select(MediaItem).where(MediaItem.status.in_(IN_FLIGHT)))).all()
        for item in in_flight:
            worker = workers.get(item.worker_name or "")
            alive = (
                worker is not None
                and worker.status != "offline"
                and worker.heartbeat_at is not None
                and worker.heartbeat_at > offline_before
            )
            if alive:
                continue
            event = await transition(
                session,
                item,
                UPLOADED,
                detail="reaper recovery",
                expect=IN_FLIGHT,
                values={"worker_name": None},
                at=now,
            )
            if event is not None:
                counts["recovered"] += 1
                events.append(event)
                events.append(await _requeue(kernel, session, item, cfg.max_attempts, now, kicks))

        stale_uploaded = (
            await session.scalars(
                select(MediaItem).where(
                    MediaItem.status == UPLOADED,
                    MediaItem.updated_at <= now - timedelta(seconds=cfg.uploaded_timeout_seconds),
                )
            )
        ).all()
        for item in stale_uploaded:
            before = len(kicks)
            events.append(await _requeue(kernel, session, item, cfg.max_attempts, now, kicks))
            counts["requeued"] += len(kicks) > before
        if any(e is not None for e in events) or kicks:
            await session.commit()
    if kicks:
        await kernel.jobs.kick(kicks)
    await publish_all(kernel.events, events)
    return counts
