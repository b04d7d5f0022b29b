"""The vault: listing, recents, deletion, logs and file URLs of a user's media. Plain async
functions; no FastAPI.

Every query is scoped by the caller's user id: one user never sees or deletes another's media.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.config import media_settings
from kiln.apps.media.map import grid
from kiln.apps.media.models import MediaItem, MediaTaskLog
from kiln.apps.media.processing.hf_sink import hf_sink_from_settings
from kiln.core.jobs import QUEUED, RUNNING, JobError

log = logging.getLogger(__name__)
ORDER_COLUMNS = {"created_at": MediaItem.created_at, "filename": MediaItem.filename, "status": MediaItem.status}


def blob_prefix(user_id: str, media_id: str) -> str:
    return f"media/{user_id}/{media_id}"


async def list_vault(
    session: AsyncSession,
    user_id: str,
    *,
    search: str | None,
    status: str | None,
    order_by: str,
    direction: str,
    page: int,
    page_size: int,
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
    rows = await session.scalars(
        select(MediaItem).where(*where).order_by(order, MediaItem.id).offset((page - 1) * page_size).limit(page_size)
    )
    return list(rows), int(total or 0)


async def recents(session: AsyncSession, user_id: str, limit: int = 4) -> list[MediaItem]:
    rows = await session.scalars(
        select(MediaItem)
        .where(MediaItem.user_id == user_id)
        .order_by(MediaItem.created_at.desc(), MediaItem.id)
        .limit(limit)
    )
    return list(rows)


async def get_owned(session: AsyncSession, user_id: str, media_id: str) -> MediaItem | None:
    return await session.scalar(select(MediaItem).where(MediaItem.id == media_id, MediaItem.user_id == user_id))


async def logs(session: AsyncSession, media_id: str) -> list[MediaTaskLog]:
    rows = await session.scalars(
        select(MediaTaskLog).where(MediaTaskLog.media_id == media_id).order_by(MediaTaskLog.at, MediaTaskLog.id)
    )
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
        gone += (
            await session.scalars(
                delete(MediaItem)
                .where(MediaItem.user_id == user_id, MediaItem.id.in_(ids[start : start + 500]))
                .returning(MediaItem.id)
                .execution_options(synchronize_session=False)
            )
        ).all()
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
