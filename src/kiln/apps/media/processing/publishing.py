"""Publishing READY media to the configured Hugging Face dataset: the `media.publish` job and
the periodic sweep that catches what a job left."""

from __future__ import annotations

import asyncio
import logging
import weakref
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import func, select, update

from kiln.apps.media.config import MediaSettings, media_settings
from kiln.apps.media.models import READY, MediaItem, MediaTaskLog
from kiln.apps.media.processing.files import local_copy
from kiln.apps.media.processing.hf_sink import HfFile, HfRateLimited, HfSinkError, hf_sink_from_settings
from kiln.apps.media.processing.hf_sink import media_path as hf_media_path
from kiln.apps.media.processing.hf_sink import thumbnail_path as hf_thumbnail_path
from kiln.apps.media.processing.status import add_log
from kiln.core.jobs import QUEUED, JobContext, TransientJobError, job_handler, periodic

log = logging.getLogger(__name__)

PUBLISH_KIND = "media.publish"
PUBLISH_BATCH_ITEMS = 100  # items one publishing run takes (2 files each; the sink commits 50 files at once)
PUBLISH_MAX_FAILURES = 3  # items whose publishing failed this often are left to an operator
PUBLISH_FAILED = "PUBLISH_FAILED"


async def maybe_publish(ctx: JobContext, cfg: MediaSettings) -> None:
    """Debounced: one queued publishing job takes every READY item not yet on the Hub."""
    if not cfg.hf_repo_id:
        return
    _queued, total = await ctx.kernel.jobs.list(kind=PUBLISH_KIND, status=QUEUED, limit=1)
    if not total:
        await ctx.kernel.jobs.submit(PUBLISH_KIND, {})


async def _unpublished(kernel: Any, limit: int) -> list[MediaItem]:
    failures = (
        select(func.count())
        .select_from(MediaTaskLog)
        .where(MediaTaskLog.media_id == MediaItem.id, MediaTaskLog.action == PUBLISH_FAILED)
        .scalar_subquery()
    )
    async with kernel.db.session() as session:
        rows = await session.scalars(
            select(MediaItem)
            .where(
                MediaItem.status == READY,
                MediaItem.hf_path.is_(None),
                MediaItem.thumbnail_key.is_not(None),
                failures < PUBLISH_MAX_FAILURES,
            )
            .order_by(MediaItem.updated_at, MediaItem.id)
            .limit(limit)
        )
        return list(rows)


async def publish_pending(kernel: Any, *, limit: int = PUBLISH_BATCH_ITEMS) -> int:
    """Copy originals + thumbnails of READY items not yet published to the configured Hugging
    Face dataset, many items per commit; returns how many items were published.

    Raises ``HfRateLimited`` on 429 (nothing recorded: the items are taken again next time) and
    ``HfSinkError`` otherwise (a PUBLISH_FAILED log row on each item of the failed batch).
    """
    async with _publish_lock(kernel):
        return await _publish_pending(kernel, limit)


# One publishing run at a time per process: two would read the same unpublished items and
# commit them twice. (Across `kiln worker` processes the race remains, and costs a duplicate
# commit of identical files and a second PUBLISH log row; nothing is lost.)
_publish_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def _publish_lock(kernel: Any) -> asyncio.Lock:
    lock = _publish_locks.get(kernel)
    if lock is None:
        lock = _publish_locks[kernel] = asyncio.Lock()
    return lock


async def _publish_pending(kernel: Any, limit: int) -> int:
    cfg = media_settings(kernel)
    sink = hf_sink_from_settings(cfg.hf_token, cfg.hf_repo_id, cfg.hf_endpoint)
    if sink is None:
        return 0
    published = 0
    per_commit = max(1, sink.max_files_per_commit // 2)
    items = await _unpublished(kernel, limit)
    for start in range(0, len(items), per_commit):
        batch = items[start : start + per_commit]
        paths = {
            i.id: (
                hf_media_path(i.user_id, i.id, i.filename, i.created_at),
                hf_thumbnail_path(i.user_id, i.id, i.filename, i.created_at),
            )
            for i in batch
        }
        async with AsyncExitStack() as stack:
            files: list[HfFile] = []
            for i in batch:
                try:
                    original = await stack.enter_async_context(local_copy(kernel.blobs, i.blob_key))
                    thumb = await stack.enter_async_context(local_copy(kernel.blobs, i.thumbnail_key or ""))
                except FileNotFoundError:
                    continue  # deleted meanwhile
                files += [HfFile(paths[i.id][0], original), HfFile(paths[i.id][1], thumb)]
            if not files:
                continue
            try:
                await asyncio.to_thread(sink.publish, files, f"Upload {len(files) // 2} media")
            except HfRateLimited:
                raise
            except HfSinkError as exc:
                async with kernel.db.session() as session:
                    for i in batch:
                        add_log(session, i.id, f"Publish to Hugging Face failed: {exc}", action=PUBLISH_FAILED)
                    await session.commit()
                raise
        published += await _record_published(kernel, sink, cfg.hf_repo_id or "", paths)
    return published


async def _record_published(kernel: Any, sink: Any, repo_id: str, paths: dict[str, tuple[str, str]]) -> int:
    """Store the repo paths of the items still there; take down the copies of those deleted meanwhile."""
    done = 0
    async with kernel.db.session() as session:
        alive = set(await session.scalars(select(MediaItem.id).where(MediaItem.id.in_(list(paths)))))
        for media_id in alive:
            original, thumb = paths[media_id]
            await session.execute(
                update(MediaItem)
                .where(MediaItem.id == media_id)
                .values(hf_path=original, hf_thumbnail_path=thumb)
                .execution_options(synchronize_session=False)
            )
            add_log(session, media_id, f"Published to Hugging Face dataset {repo_id}", action="PUBLISH")
            done += 1
        await session.commit()
    gone = [p for media_id, pair in paths.items() if media_id not in alive for p in pair]
    if gone:
        await asyncio.to_thread(sink.remove, gone)
    return done


@job_handler(PUBLISH_KIND, surface="media", max_attempts=5)
async def publish_media(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Publish what is waiting, in batched commits (see ``publish_pending``)."""
    await asyncio.sleep(PUBLISH_SETTLE_SECONDS)  # let the items finishing around now join this run
    total = 0
    while True:
        try:
            count = await publish_pending(ctx.kernel)
        except HfRateLimited as exc:
            raise TransientJobError(str(exc), retry_after=exc.retry_after or 60) from None
        total += count
        if count < PUBLISH_BATCH_ITEMS:
            return {"published": total}
        ctx.raise_if_cancelled()


PUBLISH_SETTLE_SECONDS = 1.0


@periodic("media.publish_sweep", every=300)
async def publish_sweep(kernel: Any) -> None:
    """Catches what a publishing job left (rate limits outlasting its retries, a restart)."""
    try:
        await publish_pending(kernel)
    except HfRateLimited:
        log.info("media: Hugging Face rate limit; publishing waits for the next sweep")
    except HfSinkError:
        log.warning("media: publishing to Hugging Face failed", exc_info=True)
