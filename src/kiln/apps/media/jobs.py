"""Job handlers and periodic tasks of the media surface.

`media.process` walks one item UPLOADED -> EXTRACTING -> PROCESSING -> READY (or FAILED), on
whichever engine worker slot (the "Titans") claims it. Every transition is conditional on the
item still belonging to this job, so a deleted or re-dispatched item is simply left alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete

from kiln.apps.media import pipeline
from kiln.apps.media.config import MediaSettings, media_settings
from kiln.apps.media.detection import DetectorError, DetectorUnavailable, summarize
from kiln.apps.media.hf_sink import HfFile, HfRateLimited, HfSinkError, hf_sink_from_settings
from kiln.apps.media.hf_sink import media_path as hf_media_path
from kiln.apps.media.hf_sink import thumbnail_path as hf_thumbnail_path
from kiln.apps.media.imaging import ImageRejected
from kiln.apps.media.models import (
    EXTRACTING,
    FAILED,
    PROCESSING,
    READY,
    UPLOADED,
    MediaDetection,
    MediaItem,
)
from kiln.apps.media.reaper import reap
from kiln.apps.media.status import add_log, publish_all, transition
from kiln.apps.media.system_load import record_load_sample
from kiln.core.jobs import JobCancelled, JobContext, TransientJobError, job_handler, periodic

log = logging.getLogger(__name__)
RUNNABLE = (UPLOADED, EXTRACTING, PROCESSING)
_defaults = MediaSettings()


class MediaFailed(Exception):
    """The item was marked FAILED (already logged and announced)."""


async def _step(ctx: JobContext, item: MediaItem, status: str, *, detail: str | None = None,
                values: dict[str, Any] | None = None) -> bool:
    """One transition of this job's item; False when the item is gone or no longer ours."""
    async with ctx.session() as session:
        event = await transition(session, item, status, detail=detail, worker=ctx.job.worker,
                                 expect=RUNNABLE, values=values)
        if event is None:
            return False
        await session.commit()
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
    async with ctx.session() as session:
        item = await session.get(MediaItem, payload["media_id"])
    if item is None or item.job_id != ctx.job.id or item.status not in RUNNABLE:
        return {"skipped": "media deleted or handed to another job"}
    if item.attempts >= cfg.max_attempts:
        raise await _fail(ctx, item, f"gave up after {item.attempts} attempts")
    claimed = await _step(ctx, item, EXTRACTING,
                          values={"worker_name": ctx.job.worker, "attempts": item.attempts + 1, "error": None})
    if not claimed:
        return {"skipped": "media deleted"}
    try:
        return await _run(ctx, cfg, item)
    except (JobCancelled, asyncio.CancelledError):
        if ctx.cancelled.is_set():
            await _fail(ctx, item, "processing cancelled")
        else:  # the process is shutting down: the engine re-queues the job, so the item waits too
            await _step(ctx, item, UPLOADED, detail="interrupted by shutdown", values={"worker_name": None})
        raise


async def _run(ctx: JobContext, cfg: MediaSettings, item: MediaItem) -> dict[str, Any]:
    blobs = ctx.kernel.blobs
    detector = pipeline.detector_name(cfg)
    try:
        local = blobs.local_path(item.blob_key)
        source: str | bytes = str(local) if local is not None else await blobs.read_bytes(item.blob_key)
        found = await ctx.run_cpu(pipeline.extract_for_worker, source, cfg.working_size if detector else None)
    except (ImageRejected, FileNotFoundError) as exc:
        raise await _fail(ctx, item, f"Extraction failed: {exc}") from None
    thumb_key = item.blob_key.rsplit("/", 1)[0] + "/thumbnail.jpg"
    await blobs.write_bytes(thumb_key, found["thumbnail"])
    technical = found["technical_metadata"]
    if item.sha256:  # taken at upload; the worker does not hash the bytes again
        technical["sha256"] = item.sha256
    if found["exif_empty"]:
        technical["error"] = "No EXIF data found"
    ok = await _step(ctx, item, PROCESSING, detail="Extracted EXIF and GPS data", values={
        "thumbnail_key": thumb_key, "width": found["width"], "height": found["height"],
        "phash": found["phash"], "lat": found["lat"], "lng": found["lng"], "altitude": found["altitude"],
        "address": found["address"], "camera_make": found["make"], "camera_model": found["model"],
        "taken_at": found["taken_at"], "technical_metadata": technical,
    })
    if not ok:
        await blobs.delete(thumb_key)
        return {"skipped": "media deleted"}

    if detector is None:
        # No detector configured: say so; never invent detections.
        technical = {**technical, "detection": "skipped: no detector configured"}
        done = await _step(ctx, item, READY, detail="detection skipped: no detector configured", values={
            "technical_metadata": technical, "has_trash": False, "confidence": None, "detector": None,
        })
        await _maybe_publish(ctx, cfg, item, done)
        return {"media_id": item.id, "detections": None}

    image = found["working_image"]
    try:
        found_boxes = await pipeline.run_detector(ctx, cfg, image)
    except DetectorUnavailable as exc:
        raise await _retry_later(ctx, item, cfg, str(exc)) from None
    except DetectorError as exc:
        raise await _fail(ctx, item, f"Processing failed: {exc}") from None
    summary = summarize(found_boxes)
    async with ctx.session() as session:
        await session.execute(delete(MediaDetection).where(MediaDetection.media_id == item.id))
        for d in found_boxes:
            session.add(MediaDetection(media_id=item.id, label=d.label, confidence=round(d.confidence, 4),
                                       bbox=d.normalized(image.width, image.height), detector=detector))
        technical = {**technical, "has_trash": summary.has_trash, "confidence": summary.confidence,
                     "detections_count": summary.detections_count, "detector": detector}
        event = await transition(session, item, READY, worker=ctx.job.worker, expect=RUNNABLE, values={
            "technical_metadata": technical, "has_trash": summary.has_trash,
            "confidence": summary.confidence, "detector": detector,
        })
        if event is None:
            await session.rollback()
            return {"skipped": "media deleted"}
        await session.commit()
    await publish_all(ctx.kernel.events, [event])
    await _maybe_publish(ctx, cfg, item, True)
    return {"media_id": item.id, "detections": summary.detections_count, "has_trash": summary.has_trash}


async def _maybe_publish(ctx: JobContext, cfg: MediaSettings, item: MediaItem, ready: bool) -> None:
    if ready and cfg.hf_repo_id:
        await ctx.kernel.jobs.submit("media.publish", {"media_id": item.id}, owner_id=item.user_id)


@job_handler("media.publish", surface="media", max_attempts=5)
async def publish_media(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Copy original + thumbnail to the configured Hugging Face dataset (optional sink)."""
    cfg = media_settings(ctx.kernel)
    sink = hf_sink_from_settings(cfg.hf_token, cfg.hf_repo_id, cfg.hf_endpoint)
    async with ctx.session() as session:
        item = await session.get(MediaItem, payload["media_id"])
    if sink is None or item is None or item.thumbnail_key is None:
        return {"skipped": "no sink or media gone"}
    original = hf_media_path(item.user_id, item.id, item.filename, item.created_at)
    thumb = hf_thumbnail_path(item.user_id, item.id, item.filename, item.created_at)
    files = [HfFile(original, await ctx.kernel.blobs.read_bytes(item.blob_key)),
             HfFile(thumb, await ctx.kernel.blobs.read_bytes(item.thumbnail_key))]
    try:
        await asyncio.to_thread(sink.publish, files, f"Upload media {item.id}")
    except HfRateLimited as exc:
        raise TransientJobError(str(exc), retry_after=exc.retry_after or 60) from None
    except HfSinkError as exc:
        async with ctx.session() as session:
            add_log(session, item.id, f"Publish to Hugging Face failed: {exc}", action="PUBLISH")
            await session.commit()
        raise
    async with ctx.session() as session:
        row = await session.get(MediaItem, item.id)
        if row is None:  # deleted while publishing: take the copies down again
            await asyncio.to_thread(sink.remove, [original, thumb])
            return {"skipped": "media deleted"}
        row.hf_path, row.hf_thumbnail_path = original, thumb
        add_log(session, item.id, f"Published to Hugging Face dataset {cfg.hf_repo_id}", action="PUBLISH")
        await session.commit()
    return {"paths": [original, thumb]}


@periodic("media.reaper", every=_defaults.reaper_every_seconds)
async def reaper_task(kernel: Any) -> None:
    await reap(kernel)


@periodic("media.load_sample", every=_defaults.load_sample_seconds)
async def load_sample_task(kernel: Any) -> None:
    await record_load_sample(kernel)
