"""The `media.process` job: one item UPLOADED -> EXTRACTING -> PROCESSING -> READY (or FAILED).

It runs on whichever engine worker slot (the "Titans") claims it. The claim counts an attempt on
the item; every later transition is conditional on the item still belonging to this job *and
attempt*, so a deleted or re-dispatched item, or one a later attempt of the same job took over (a
stale run recovered while the first still finishes), is simply left alone. Each attempt writes its
thumbnail under its own key and deletes only that key when it loses, so it can never remove
the thumbnail another attempt stored; the replaced thumbnail of an earlier attempt is removed
by the attempt that replaced it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from kiln.apps.media.config import MediaSettings, media_settings
from kiln.apps.media.models import (
    EXTRACTING,
    FAILED,
    PROCESSING,
    READY,
    UPLOADED,
    MediaDetection,
    MediaItem,
)
from kiln.apps.media.processing import batch, imaging, pipeline
from kiln.apps.media.processing.decode_budget import decode_budget
from kiln.apps.media.processing.detection import DetectorError, DetectorUnavailable, summarize
from kiln.apps.media.processing.files import local_copy
from kiln.apps.media.processing.imaging import ImageRejected
from kiln.apps.media.processing.publishing import maybe_publish
from kiln.apps.media.processing.status import StatusEvent, logged, publish_all, transition, transition_through
from kiln.core.db import new_id, utcnow
from kiln.core.jobs import JobCancelled, JobContext, TransientJobError, job_handler

RUNNABLE = (UPLOADED, EXTRACTING, PROCESSING)
log = logging.getLogger(__name__)


class MediaFailed(Exception):
    """The item was marked FAILED (already logged and announced)."""


def _owner(item: MediaItem) -> tuple[str | None, int]:
    """(job id, attempt) of the claim that loaded `item`: what every later transition requires."""
    return item.job_id, item.attempts


async def _step(
    ctx: JobContext, item: MediaItem, status: str, *, detail: str | None = None, values: dict[str, Any] | None = None
) -> bool:
    """One transition of this attempt's item (in a transaction shared with other jobs' steps);
    False when the item is gone or no longer ours."""
    owner = _owner(item)

    async def op(session: AsyncConnection) -> StatusEvent | None:
        return await transition(
            session, item, status, detail=detail, worker=ctx.job.worker, expect=RUNNABLE, values=values, owner=owner
        )

    event = await batch.run(ctx.kernel, op)
    if event is None:
        return False
    await publish_all(ctx.kernel.events, [event])
    return True


async def _fail(ctx: JobContext, item: MediaItem, detail: str) -> MediaFailed:
    await _step(ctx, item, FAILED, detail=detail, values={"error": detail, "worker_name": None})
    return MediaFailed(detail)


async def _retry_later(ctx: JobContext, item: MediaItem, cfg: MediaSettings, reason: str) -> Exception:
    if ctx.job.attempts >= ctx.job.max_attempts or item.attempts >= cfg.max_attempts:
        return await _fail(ctx, item, f"Processing failed: {reason} (after {item.attempts} attempts)")
    await _step(ctx, item, UPLOADED, detail=f"retrying: {reason}", values={"worker_name": None})
    return TransientJobError(reason, retry_after=cfg.retry_seconds)


@job_handler("media.process", surface="media", max_attempts=3)
async def process_media(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    cfg = media_settings(ctx.kernel)

    async def claim(session: AsyncConnection) -> tuple[MediaItem | None, StatusEvent | None]:
        return await _claim(session, ctx, payload["media_id"], cfg.max_attempts)

    # Jobs kicked together start together: their claims share one transaction. That transaction
    # runs on even if this task is cancelled meanwhile, so a cancel waits to learn whether the
    # claim committed, and then undoes it like any cancel after the claim.
    claiming = asyncio.ensure_future(batch.run(ctx.kernel, claim))
    try:
        item, event = await asyncio.shield(claiming)
    except asyncio.CancelledError:
        item, event = await claiming
        if item is not None and event is not None:
            await _cancelled(ctx, item)
        raise
    if item is None:
        return {"skipped": "media deleted or handed to another job"}
    if event is None:
        raise await _fail(ctx, item, f"gave up after {item.attempts} attempts")
    await publish_all(ctx.kernel.events, [event])
    try:
        return await _run(ctx, cfg, item)
    except (JobCancelled, asyncio.CancelledError):
        await _cancelled(ctx, item)
        raise


async def _cancelled(ctx: JobContext, item: MediaItem) -> None:
    """The job was cancelled, or the process is stopping, after this attempt claimed the item."""
    if ctx.cancelled.is_set():
        await _fail(ctx, item, "processing cancelled")
    else:  # the process is shutting down: the engine re-queues the job, so the item waits too
        await _step(ctx, item, UPLOADED, detail="interrupted by shutdown", values={"worker_name": None})


_ITEMS = MediaItem.__table__
# A Core statement built once (an ORM-enabled UPDATE ... RETURNING costs several times more, and
# building it per claim costs about as much as running it); the object built from the row is
# only read and mirrored, never added to a session.
_CLAIM = (
    update(_ITEMS)
    .where(
        _ITEMS.c.id == bindparam("c_id"),
        _ITEMS.c.job_id == bindparam("c_job"),
        _ITEMS.c.status.in_([bindparam(f"c_state_{n}", state) for n, state in enumerate(RUNNABLE)]),
        _ITEMS.c.attempts < bindparam("c_max"),
    )
    .values(
        status=EXTRACTING,
        updated_at=bindparam("c_now", type_=_ITEMS.c.updated_at.type),
        worker_name=bindparam("c_worker"),
        attempts=_ITEMS.c.attempts + 1,
        error=None,
    )
    .returning(*_ITEMS.c)
)


async def _claim(
    session: AsyncConnection, ctx: JobContext, media_id: str, max_attempts: int
) -> tuple[MediaItem | None, StatusEvent | None]:
    """Load and claim the item (-> EXTRACTING) in one statement: (item, event) when claimed,
    (item, None) when it ran out of attempts, (None, None) when it is gone or not this job's."""
    now = utcnow()
    row = (
        await session.execute(
            _CLAIM,
            {
                "c_id": media_id,
                "c_job": ctx.job.id,
                "c_max": max_attempts,
                "c_now": now,
                "c_worker": ctx.job.worker,
            },
        )
    ).first()
    if row is not None:
        claimed = MediaItem(**row._asdict())
        (event,) = await logged(session, claimed, [(EXTRACTING, None, now)], worker=ctx.job.worker)
        return claimed, event
    # Why not: gone, not ours, or out of attempts.
    row = (await session.execute(select(*_ITEMS.c).where(_ITEMS.c.id == media_id))).first()
    if row is None or row.job_id != ctx.job.id or row.status not in RUNNABLE:
        return None, None
    return MediaItem(**row._asdict()), None


async def _extract(ctx: JobContext, cfg: MediaSettings, item: MediaItem, working_size: int | None) -> dict[str, Any]:
    """Decode the upload in the CPU pool once the decode-memory budget has room for it."""
    budget = decode_budget(ctx.kernel)
    box = max(imaging.THUMBNAIL_SIZE, working_size or 0)
    cost = (
        imaging.decode_cost_bytes(item.width, item.height, item.mime, box)
        if item.width and item.height
        else budget.total
    )  # size unknown (stored before the header was kept): decode alone
    async with local_copy(ctx.kernel.blobs, item.blob_key) as source, budget.reserve(cost):
        return await ctx.run_cpu(pipeline.extract_for_worker, str(source), working_size, cfg.max_pixels)


async def _run(ctx: JobContext, cfg: MediaSettings, item: MediaItem) -> dict[str, Any]:
    blobs = ctx.kernel.blobs
    detector = pipeline.detector_name(cfg)
    owner, previous_thumb = _owner(item), item.thumbnail_key
    try:
        found = await _extract(ctx, cfg, item, cfg.working_size if detector else None)
    except (ImageRejected, FileNotFoundError) as exc:
        raise await _fail(ctx, item, f"Extraction failed: {exc}") from None
    # This attempt's own key: a superseded attempt can only ever delete its own file.
    thumb_key = f"{item.blob_key.rsplit('/', 1)[0]}/thumbnail-{owner[0]}-{owner[1]}.jpg"
    await blobs.write_bytes(thumb_key, found["thumbnail"])
    technical = found["technical_metadata"]
    if item.sha256:  # taken at upload; the worker does not hash the bytes again
        technical["sha256"] = item.sha256
    if found["exif_empty"]:
        technical["error"] = "No EXIF data found"
    processing = {
        "thumbnail_key": thumb_key,
        "width": found["width"],
        "height": found["height"],
        "phash": found["phash"],
        "lat": found["lat"],
        "lng": found["lng"],
        "altitude": found["altitude"],
        "address": found["address"],
        "camera_make": found["make"],
        "camera_model": found["model"],
        "taken_at": found["taken_at"],
        "technical_metadata": technical,
    }
    if detector is None:
        # No detector configured: say so; never invent detections. PROCESSING and READY are
        # written in one statement (two log rows, two messages, one commit), and the job's own
        # end rides on that commit too.
        technical = {**technical, "detection": "skipped: no detector configured"}
        done = {"media_id": item.id, "detections": None}

        async def finish(session: AsyncConnection) -> list[StatusEvent]:
            events = await transition_through(
                session,
                item,
                [(PROCESSING, "Extracted EXIF and GPS data"), (READY, "detection skipped: no detector configured")],
                worker=ctx.job.worker,
                expect=RUNNABLE,
                values={
                    **processing,
                    "technical_metadata": technical,
                    "has_trash": False,
                    "confidence": None,
                    "detector": None,
                },
                owner=owner,
            )
            if events:
                await ctx.complete_in(session, done)
            return events

        events = await batch.run(ctx.kernel, finish)
        if not events:
            await blobs.delete(thumb_key)
            return {"skipped": "media deleted or taken over by another attempt"}
        await _drop_replaced(blobs, previous_thumb, thumb_key)
        await publish_all(ctx.kernel.events, events)
        await _publish_to_hub(ctx, cfg)
        return done

    ok = await _step(ctx, item, PROCESSING, detail="Extracted EXIF and GPS data", values=processing)
    if not ok:
        await blobs.delete(thumb_key)
        return {"skipped": "media deleted or taken over by another attempt"}
    await _drop_replaced(blobs, previous_thumb, thumb_key)

    image = found["working_image"]
    try:
        found_boxes = await pipeline.run_detector(ctx, cfg, image)
    except DetectorUnavailable as exc:
        raise await _retry_later(ctx, item, cfg, str(exc)) from None
    except DetectorError as exc:
        raise await _fail(ctx, item, f"Processing failed: {exc}") from None
    summary = summarize(found_boxes)
    technical = {
        **technical,
        "has_trash": summary.has_trash,
        "confidence": summary.confidence,
        "detections_count": summary.detections_count,
        "detector": detector,
    }

    done = {"media_id": item.id, "detections": summary.detections_count, "has_trash": summary.has_trash}

    async def ready(session: AsyncConnection) -> StatusEvent | None:
        # A savepoint: the detections are written first (the grid sync of READY reads their
        # labels) and undone alone if the item is no longer this attempt's.
        async with session.begin_nested() as savepoint:
            await session.execute(delete(MediaDetection).where(MediaDetection.media_id == item.id))
            if found_boxes:
                await session.execute(
                    insert(MediaDetection.__table__),
                    [
                        {
                            "id": new_id(),
                            "media_id": item.id,
                            "label": d.label,
                            "confidence": round(d.confidence, 4),
                            "bbox": d.normalized(image.width, image.height),
                            "detector": detector,
                        }
                        for d in found_boxes
                    ],
                )
            event = await transition(
                session,
                item,
                READY,
                worker=ctx.job.worker,
                expect=RUNNABLE,
                values={
                    "technical_metadata": technical,
                    "has_trash": summary.has_trash,
                    "confidence": summary.confidence,
                    "detector": detector,
                },
                owner=owner,
            )
            if event is None:
                await savepoint.rollback()
        if event is not None:
            await ctx.complete_in(session, done)
        return event

    event = await batch.run(ctx.kernel, ready)
    if event is None:
        # Our thumbnail stays: the row may still name it (the attempt that took over replaces
        # and then deletes it), or the item was deleted with all its files.
        return {"skipped": "media deleted or taken over by another attempt"}
    await publish_all(ctx.kernel.events, [event])
    await _publish_to_hub(ctx, cfg)
    return done


async def _publish_to_hub(ctx: JobContext, cfg: MediaSettings) -> None:
    """Queue the Hub publishing of the READY item. The job already ended SUCCEEDED in the READY
    transaction, so a failure here is only logged: the periodic sweep publishes what it left."""
    try:
        await maybe_publish(ctx, cfg)
    except Exception:
        log.exception("media job %s: queueing the Hub publishing failed", ctx.job.id)


async def _drop_replaced(blobs: Any, previous: str | None, current: str) -> None:
    """The thumbnail an earlier attempt stored, now that the row names this attempt's."""
    if previous and previous != current:
        await blobs.delete(previous)
