"""Media items: upload, vault listing, recents, deletion, logs. Plain async functions; no FastAPI.

Every query is scoped by the caller's user id: one user never sees or deletes another's media.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media import grid, imaging
from kiln.apps.media.batch import insert_logs
from kiln.apps.media.config import media_settings
from kiln.apps.media.hf_sink import hf_sink_from_settings
from kiln.apps.media.models import FAILED, PENDING, UPLOADED, MediaItem, MediaTaskLog
from kiln.apps.media.status import StatusEvent, log_row, publish_all, transition
from kiln.core.blobs import BlobTooLarge
from kiln.core.db import new_id, utcnow
from kiln.core.jobs import QUEUED, RUNNING, JobError

log = logging.getLogger(__name__)
_ITEMS = MediaItem.__table__
_INSERT_ITEM = insert(_ITEMS)  # built once (its cache key is computed once), values bound per upload
ORDER_COLUMNS = {"created_at": MediaItem.created_at, "filename": MediaItem.filename, "status": MediaItem.status}


@dataclass(slots=True)
class Rejection:
    filename: str
    status_code: int
    detail: str


@dataclass(slots=True)
class UploadOutcome:
    accepted: list[MediaItem] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def blob_prefix(user_id: str, media_id: str) -> str:
    return f"media/{user_id}/{media_id}"


async def _discard(kernel: Any, session: AsyncSession, item: MediaItem, reason: str) -> None:
    await session.execute(delete(MediaItem).where(MediaItem.id == item.id))
    await session.commit()
    await kernel.blobs.delete_prefix(blob_prefix(item.user_id, item.id))
    # The client already heard PENDING for this id; tell it how that ended.
    event = StatusEvent(user_id=item.user_id, media_id=item.id, status=FAILED, worker=None, at=utcnow(),
                        address=None)
    await publish_all(kernel.events, [event])
    log.info("media upload %s rejected: %s", item.id, reason)


PROBE_HEAD_BYTES = 256 * 1024  # JPEG/PNG/WebP headers and EXIF fit many times over


class _Head:
    """Keeps the first bytes of a stream as they pass: the header and EXIF a probe needs sit
    there, so a stored upload is not read back to identify it."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int = PROBE_HEAD_BYTES) -> None:
        self._chunks, self._limit = chunks, limit
        self._kept: list[bytes] = []
        self._size = 0

    async def stream(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            if self._size < self._limit:
                self._kept.append(chunk)
                self._size += len(chunk)
            yield chunk

    def bytes(self) -> bytes:
        return b"".join(self._kept)[:self._limit]


async def _probe(kernel: Any, key: str, size: int, head: bytes, max_pixels: int) -> imaging.ImageInfo:
    """Identify a stored upload from its first bytes: headers and EXIF sit at the start.

    A multi-GB upload is never pulled back whole. Only when the head is not enough (a TIFF whose
    directory was written after the pixels) is the whole file read. Too many pixels is decided
    from the header alone.
    """
    try:
        return await asyncio.to_thread(partial(imaging.probe, head, max_pixels=max_pixels))
    except imaging.ImageTooLarge:
        raise
    except imaging.ImageRejected:
        if size <= len(head):
            raise
    local = kernel.blobs.local_path(key)
    source = str(local) if local else await kernel.blobs.read_bytes(key)
    return await asyncio.to_thread(partial(imaging.probe, source, max_pixels=max_pixels))


async def upload_one(
    kernel: Any, session: AsyncSession, user_id: str, filename: str, chunks: AsyncIterator[bytes],
    outcome: UploadOutcome,
) -> None:
    """Store one file: PENDING row, stream to the blob store, verify, dedupe, UPLOADED + job."""
    cfg = media_settings(kernel)
    media_id = new_id()
    now = utcnow()
    values = {"id": media_id, "user_id": user_id, "status": PENDING, "filename": filename[:255] or "file",
              "blob_key": f"{blob_prefix(user_id, media_id)}/original", "has_trash": False, "attempts": 0,
              "created_at": now, "updated_at": now}
    # Core inserts on a connection of their own: the ORM session's unit of work and bookkeeping
    # cost more than these two rows. The object mirrors the row for the transitions below (never
    # added to a session).
    item = MediaItem(**values)
    async with kernel.db.engine.begin() as conn:  # commits on leaving
        await conn.execute(_INSERT_ITEM, values)
        await insert_logs(conn, [log_row(media_id, PENDING, None, None, now)])
    # Stamped like its log row, so a `since` replay and the live push name the same update.
    await publish_all(kernel.events, [StatusEvent(user_id, media_id, PENDING, None, now)])

    head = _Head(chunks)
    try:
        info = await kernel.blobs.write_stream(item.blob_key, head.stream(), max_bytes=cfg.max_upload_bytes)
    except BlobTooLarge:
        detail = f"File too large: the limit is {cfg.max_upload_bytes} bytes"
        outcome.rejected.append(Rejection(filename, 413, detail))
        await _discard(kernel, session, item, detail)
        return
    except Exception as exc:  # the body broke or the client left mid-file: no half-stored media
        await _discard(kernel, session, item, f"upload interrupted: {type(exc).__name__}")
        raise
    try:
        probed = await _probe(kernel, item.blob_key, info.size, head.bytes(), cfg.max_pixels)
    except imaging.ImageRejected as exc:
        detail = f"Not an accepted image: {exc}"
        outcome.rejected.append(Rejection(filename, 415, detail))
        await _discard(kernel, session, item, detail)
        return
    try:
        job = await kernel.jobs.create(session, "media.process", {"media_id": media_id}, owner_id=user_id,
                                       max_attempts=cfg.max_attempts)
        event = await transition(session, item, UPLOADED, expect=(PENDING,), values={
            "width": probed.width, "height": probed.height, "mime": probed.mime, "size_bytes": info.size,
            "sha256": info.sha256, "job_id": job.id,
        })
        await session.commit()
    except IntegrityError:
        # The unique index (user_id, sha256) found these bytes already stored (or committed by a
        # concurrent upload first): this copy is the duplicate. No query beforehand: duplicates
        # are rare, and the index has to be checked at commit anyway.
        await session.rollback()
        duplicate = await _duplicate_of(session, user_id, info.sha256, media_id)
        if duplicate is None:
            raise
        item = await session.get(MediaItem, media_id) or item  # reloaded: the rollback expired it
        outcome.rejected.append(Rejection(filename, 409, f"Duplicate of media {duplicate}"))
        await _discard(kernel, session, item, "duplicate")
        return
    await kernel.jobs.kick(job.id)
    await publish_all(kernel.events, [event])
    outcome.accepted.append(item)


async def _duplicate_of(session: AsyncSession, user_id: str, sha256: str, media_id: str) -> str | None:
    return await session.scalar(select(MediaItem.id).where(
        MediaItem.user_id == user_id, MediaItem.sha256 == sha256, MediaItem.id != media_id).limit(1))


async def list_vault(
    session: AsyncSession, user_id: str, *, search: str | None, status: str | None, order_by: str,
    direction: str, page: int, page_size: int,
) -> tuple[list[MediaItem], int]:
    where = [MediaItem.user_id == user_id]
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(func.lower(MediaItem.filename).like(f"%{escaped}%", escape="\\"))
    if status:
        where.append(MediaItem.status == status)
    total = await session.scalar(select(func.count()).select_from(MediaItem).where(*where))
    column = ORDER_COLUMNS[order_by]
    order = column.asc() if direction == "asc" else column.desc()
    rows = await session.scalars(select(MediaItem).where(*where).order_by(order, MediaItem.id)
                                 .offset((page - 1) * page_size).limit(page_size))
    return list(rows), int(total or 0)


async def recents(session: AsyncSession, user_id: str, limit: int = 4) -> list[MediaItem]:
    rows = await session.scalars(select(MediaItem).where(MediaItem.user_id == user_id)
                                 .order_by(MediaItem.created_at.desc(), MediaItem.id).limit(limit))
    return list(rows)


async def get_owned(session: AsyncSession, user_id: str, media_id: str) -> MediaItem | None:
    return await session.scalar(select(MediaItem).where(MediaItem.id == media_id, MediaItem.user_id == user_id))


async def logs(session: AsyncSession, media_id: str) -> list[MediaTaskLog]:
    rows = await session.scalars(select(MediaTaskLog).where(MediaTaskLog.media_id == media_id)
                                 .order_by(MediaTaskLog.at, MediaTaskLog.id))
    return list(rows)


async def delete_media(kernel: Any, session: AsyncSession, user_id: str, media_id: str | None = None) -> int:
    """Delete one item (or all of the user's): rows, blobs, sink copies; cancel their jobs."""
    where = [MediaItem.user_id == user_id]
    if media_id is not None:
        where.append(MediaItem.id == media_id)
    items = list(await session.scalars(select(MediaItem).where(*where)))
    if not items:
        return 0
    ids = [i.id for i in items]
    gone: list[str] = []
    for start in range(0, len(ids), 500):  # keep IN lists within driver parameter limits
        gone += (await session.scalars(delete(MediaItem).where(
            MediaItem.user_id == user_id, MediaItem.id.in_(ids[start:start + 500])).returning(MediaItem.id)
            .execution_options(synchronize_session=False))).all()
    # After the rows are gone (and locked until commit): a concurrent READY either committed its
    # grid membership before, which is subtracted here, or finds no row and adds nothing.
    await grid.remove(session, gone)
    await session.commit()
    for item in items:
        await kernel.blobs.delete_prefix(blob_prefix(user_id, item.id))
        if item.job_id:
            await _cancel_quietly(kernel, item.job_id)
    await _remove_from_sink(kernel, [p for i in items for p in (i.hf_path, i.hf_thumbnail_path) if p])
    return len(items)


async def _cancel_quietly(kernel: Any, job_id: str) -> None:
    job = await kernel.jobs.get(job_id)
    if job is not None and job.status in (QUEUED, RUNNING):
        try:
            await kernel.jobs.cancel(job_id)
        except (JobError, LookupError):
            pass  # finished meanwhile


async def _remove_from_sink(kernel: Any, paths: list[str]) -> None:
    cfg = media_settings(kernel)
    if not paths or not cfg.hf_repo_id:
        return
    try:
        sink = hf_sink_from_settings(cfg.hf_token, cfg.hf_repo_id, cfg.hf_endpoint)
        if sink is not None:
            await asyncio.to_thread(sink.remove, paths)  # one commit for all of them
    except Exception:  # the local delete stands; leftovers on the Hub are logged for an operator
        log.warning("media: removing %d file(s) from the Hugging Face sink failed", len(paths), exc_info=True)


async def media_urls(kernel: Any, item: MediaItem, base: str = "") -> tuple[str, str | None]:
    """(image URL, thumbnail URL): presigned when the store is S3, else served by Kiln under `base`
    (the prefix the request came in on)."""
    image = await kernel.blobs.presigned_url(item.blob_key)
    thumb = await kernel.blobs.presigned_url(item.thumbnail_key) if item.thumbnail_key else None
    image = image or f"{base}/api/media/{item.id}/image"
    if item.thumbnail_key:
        thumb = thumb or f"{base}/api/media/{item.id}/thumbnail"
    return image, thumb
