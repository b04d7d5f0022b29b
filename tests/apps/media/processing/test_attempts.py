"""Two attempts of one `media.process` job run against each other (a stale run recovered while
the first still finishes): the item ends READY with a thumbnail that exists, and the attempt
that lost never fails, overwrites or deletes what the other stored. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kiln.apps.media.models import MediaItem
from kiln.apps.media.processing.jobs import process_media
from kiln.core.jobs import Job, JobContext
from tests.apps.media.mediakit import add_media, photo, register, settings  # noqa: F401  (fixture)


async def _noop(_fraction: float, _message: str | None) -> None:
    return None


async def _context(kernel: Any, job_id: str, worker: str) -> JobContext:
    async with kernel.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        job.worker = worker  # the slot this attempt runs on (not written back)
    return JobContext(
        job,
        kernel,
        save_progress=_noop,
        publish_progress=_noop,
        cpu=kernel.runner.cpu,
        progress_interval=1.0,
        cancel_grace=1.0,
    )


def _gated(ctx: JobContext, reached: asyncio.Event, release: asyncio.Event) -> None:
    """Pause this attempt right after its decode, before it stores anything."""
    run_cpu = ctx.run_cpu

    async def paused(fn: Any, *args: Any) -> Any:
        result = await run_cpu(fn, *args)
        reached.set()
        await release.wait()
        return result

    ctx.run_cpu = paused  # type: ignore[method-assign]


async def _uploaded_item(kernel: Any, user_id: str) -> tuple[str, str]:
    data = photo(size=(800, 600))
    async with kernel.db.session() as session:
        job = await kernel.jobs.create(session, "media.process", {}, owner_id=user_id, max_attempts=3)
        await session.commit()  # created, never kicked: only the two attempts below run it
    media_id = await add_media(
        kernel,
        user_id,
        status="UPLOADED",
        job_id=job.id,
        width=800,
        height=600,
        mime="image/jpeg",
        size_bytes=len(data),
    )
    await kernel.blobs.write_bytes(f"media/{user_id}/{media_id}/original", data)
    return media_id, job.id


def _files(kernel: Any, user_id: str, media_id: str) -> list[str]:
    folder = kernel.blobs.local_path(f"media/{user_id}/{media_id}")
    return sorted(p.name for p in folder.iterdir())


async def test_a_superseded_attempt_leaves_the_winners_thumbnail(app, client):
    kernel = app.state.kernel
    user = await register(client, "ann@example.com")
    media_id, job_id = await _uploaded_item(kernel, user["id"])
    first, second = await _context(kernel, job_id, "Helios"), await _context(kernel, job_id, "Eos")
    reached, release = asyncio.Event(), asyncio.Event()
    _gated(first, reached, release)

    stale = asyncio.create_task(process_media(first, {"media_id": media_id}))
    await asyncio.wait_for(reached.wait(), 30)  # the first attempt claimed and decoded, then stalls
    won = await process_media(second, {"media_id": media_id})  # the recovered run takes over
    assert won["media_id"] == media_id
    release.set()
    lost = await asyncio.wait_for(stale, 30)

    async with kernel.db.session() as session:
        item = await session.get(MediaItem, media_id)
    assert item is not None and item.status == "READY" and item.attempts == 2 and item.worker_name == "Eos"
    assert item.thumbnail_key is not None and await kernel.blobs.exists(item.thumbnail_key)
    assert (await client.get(f"/api/media/{media_id}/thumbnail")).status_code == 200
    assert lost["skipped"].startswith("media deleted or taken over")
    # The loser removed exactly its own file: only the original and the winner's thumbnail remain.
    assert _files(kernel, user["id"], media_id) == sorted(["original", item.thumbnail_key.rsplit("/", 1)[1]])
    logs = (await client.get(f"/api/map/{media_id}/logs")).json()["history"]
    ready = "Status changed to READY (detection skipped: no detector configured)"
    assert [h["message"] for h in logs].count(ready) == 1
    assert not any("FAILED" in h["message"] for h in logs)


async def test_reprocessing_replaces_the_thumbnail_and_removes_the_old_one(app, client):
    kernel = app.state.kernel
    user = await register(client, "ann@example.com")
    media_id, job_id = await _uploaded_item(kernel, user["id"])
    await process_media(await _context(kernel, job_id, "Helios"), {"media_id": media_id})
    async with kernel.db.session() as session:
        before = (await session.get(MediaItem, media_id)).thumbnail_key
    # Dispatched again: a new job takes the READY item through the pipeline once more.
    response = await client.post("/api/dashboard/ai-workers/dispatch", params={"media_id": media_id})
    assert response.status_code == 202
    for _ in range(600):  # the runner takes the new job
        async with kernel.db.session() as session:
            item = await session.get(MediaItem, media_id)
        if item.status == "READY" and item.thumbnail_key != before:
            break
        await asyncio.sleep(0.05)
    assert item.status == "READY" and item.thumbnail_key != before
    assert await kernel.blobs.exists(item.thumbnail_key) and not await kernel.blobs.exists(before)
    assert _files(kernel, user["id"], media_id) == sorted(["original", item.thumbnail_key.rsplit("/", 1)[1]])


@pytest.mark.parametrize(("job_cancelled", "expected"), [(False, "UPLOADED"), (True, "FAILED")])
async def test_a_cancel_during_the_grouped_claim_does_not_strand_the_item(app, client, job_cancelled, expected):
    # The claim's shared transaction commits even when the task waiting on it is cancelled: the
    # handler must learn that and hand the item back (stopping) or fail it (job cancelled).
    kernel = app.state.kernel
    user = await register(client, "ann@example.com")
    media_id, job_id = await _uploaded_item(kernel, user["id"])
    ctx = await _context(kernel, job_id, "Helios")
    if job_cancelled:
        ctx.cancelled.set()
    task = asyncio.create_task(process_media(ctx, {"media_id": media_id}))
    await asyncio.sleep(0)  # the handler has queued its claim
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.5)  # whatever the group commit still had queued has run by now
    async with kernel.db.session() as session:
        item = await session.get(MediaItem, media_id)
    assert item.status == expected and item.attempts == 1 and item.worker_name is None
