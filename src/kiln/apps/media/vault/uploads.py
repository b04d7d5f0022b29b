"""Uploads: one streamed file -> PENDING row, blob, probe, duplicate check, UPLOADED + its job.
Plain async functions; no FastAPI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.config import media_settings
from kiln.apps.media.models import FAILED, PENDING, UPLOADED, MediaItem
from kiln.apps.media.processing import imaging
from kiln.apps.media.processing.batch import insert_logs
from kiln.apps.media.processing.status import StatusEvent, log_row, publish_all, transition
from kiln.apps.media.vault.service import blob_prefix
from kiln.core.blobs import BlobTooLarge
from kiln.core.db import new_id, utcnow

log = logging.getLogger(__name__)
_ITEMS = MediaItem.__table__
_INSERT_ITEM = insert(_ITEMS)  # built once (its cache key is computed once), values bound per upload


@dataclass(slots=True)
class Rejection:
    filename: str
    status_code: int
    detail: str


@dataclass(slots=True)
class UploadOutcome:
    accepted: list[MediaItem] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


async def _discard(kernel: Any, session: AsyncSession, item: MediaItem, reason: str) -> None:
    await session.execute(delete(MediaItem).where(MediaItem.id == item.id))
    await session.commit()
    await kernel.blobs.delete_prefix(blob_prefix(item.user_id, item.id))
    # The client already heard PENDING for this id; tell it how that ended.
    event = StatusEvent(user_id=item.user_id, media_id=item.id, status=FAILED, worker=None, at=utcnow(), address=None)
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
        return b"".join(self._kept)[: self._limit]


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
    kernel: Any,
    session: AsyncSession,
    user_id: str,
    filename: str,
    chunks: AsyncIterator[bytes],
    outcome: UploadOutcome,
) -> None:
    """Store one file: PENDING row, stream to the blob store, verify, dedupe, UPLOADED + job."""
    cfg = media_settings(kernel)
    media_id = new_id()
    now = utcnow()
    values = {
        "id": media_id,
        "user_id": user_id,
        "status": PENDING,
        "filename": filename[:255] or "file",
        "blob_key": f"{blob_prefix(user_id, media_id)}/original",
        "has_trash": False,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
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
        # Core statements on a connection of their own, like the PENDING row's: the request's ORM
        # session would add its unit-of-work bookkeeping to three statements and a commit.
        async with kernel.db.engine.begin() as conn:  # commits on leaving
            job = await kernel.jobs.create(
                conn, "media.process", {"media_id": media_id}, owner_id=user_id, max_attempts=cfg.max_attempts
            )
            event = await transition(
                conn,
                item,
                UPLOADED,
                expect=(PENDING,),
                values={
                    "width": probed.width,
                    "height": probed.height,
                    "mime": probed.mime,
                    "size_bytes": info.size,
                    "sha256": info.sha256,
                    "job_id": job.id,
                },
            )
    except IntegrityError:
        # The unique index (user_id, sha256) found these bytes already stored (or committed by a
        # concurrent upload first): this copy is the duplicate (its transaction was rolled back).
        # No query beforehand: duplicates are rare, and the index has to be checked anyway.
        duplicate = await _duplicate_of(session, user_id, info.sha256, media_id)
        if duplicate is None:
            raise
        outcome.rejected.append(Rejection(filename, 409, f"Duplicate of media {duplicate}"))
        await _discard(kernel, session, item, "duplicate")
        return
    await kernel.jobs.kick(job.id)
    await publish_all(kernel.events, [event])
    outcome.accepted.append(item)


async def _duplicate_of(session: AsyncSession, user_id: str, sha256: str, media_id: str) -> str | None:
    return await session.scalar(
        select(MediaItem.id)
        .where(MediaItem.user_id == user_id, MediaItem.sha256 == sha256, MediaItem.id != media_id)
        .limit(1)
    )
