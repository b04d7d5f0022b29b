"""The reaper's rules, with the clock under the test's control."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from kiln.apps.media.models import MediaItem, MediaTaskLog
from kiln.apps.media.processing.reaper import infer_step, reap
from kiln.apps.media.processing.status import add_log
from kiln.core.db import utcnow
from kiln.core.jobs import Job
from tests.apps.media.mediakit import add_media, register, settings  # noqa: F401  (fixture)


async def _state(kernel, media_id):
    async with kernel.db.session() as session:
        item = await session.get(MediaItem, media_id)
        logs = (
            await session.scalars(
                select(MediaTaskLog.message).where(MediaTaskLog.media_id == media_id).order_by(MediaTaskLog.at)
            )
        ).all()
        job = await session.get(Job, item.job_id) if item.job_id else None
    return item, list(logs), job


async def test_reaper_rules(app, client):
    user = await register(client, "ann@example.com")
    k = app.state.kernel
    now = utcnow()
    old = now - timedelta(minutes=20)
    stuck_pending = await add_media(k, user["id"], status="PENDING", updated_at=old)
    async with k.db.session() as session:
        add_log(session, stuck_pending, "Status changed to PENDING", at=old)
        await session.commit()
    fresh_pending = await add_media(k, user["id"], status="PENDING", updated_at=now - timedelta(minutes=5))
    on_dead_worker = await add_media(
        k, user["id"], status="EXTRACTING", worker_name="Ghost", updated_at=old, attempts=1
    )
    on_live_worker = await add_media(
        k, user["id"], status="PROCESSING", worker_name="Helios", updated_at=old, attempts=1
    )
    poison = await add_media(k, user["id"], status="PROCESSING", worker_name="Ghost", updated_at=old, attempts=3)
    orphan_uploaded = await add_media(k, user["id"], status="UPLOADED", updated_at=old)

    async with k.events.subscribe("media.") as events:
        counts = await reap(k, now=now)
        published = []
        while not events.queue.empty():
            published.append(events.queue.get_nowait()[1]["message"])
    assert counts == {"failed_pending": 1, "recovered": 2, "requeued": 1}

    item, logs, _ = await _state(k, stuck_pending)
    assert item.status == "FAILED"
    assert logs[-1] == (
        "Status changed to FAILED (reaper pending timeout: failed during upload transfer "
        "(last log: Status changed to PENDING))"
    )
    assert (await _state(k, fresh_pending))[0].status == "PENDING"

    item, logs, job = await _state(k, on_dead_worker)
    assert logs[0] == "Status changed to UPLOADED (reaper recovery)"  # the new job may have started since
    assert job is not None and job.kind == "media.process"  # re-queued on a live worker
    item, logs, _ = await _state(k, on_live_worker)
    assert item.status == "PROCESSING" and logs == []

    item, logs, _ = await _state(k, poison)
    assert item.status == "FAILED" and logs[-1] == "Status changed to FAILED (reaper: gave up after 3 attempts)"
    item, logs, job = await _state(k, orphan_uploaded)
    assert job is not None and job.payload == {"media_id": orphan_uploaded}

    by_media = {(m["media_id"], m["status"]) for m in published}
    assert {(stuck_pending, "FAILED"), (on_dead_worker, "UPLOADED"), (poison, "FAILED")} <= by_media

    # A second pass finds nothing new to do for the items it already handled.
    again = await reap(k, now=now)
    assert again["failed_pending"] == 0 and again["recovered"] == 0

    # The new jobs really run: these rows have no stored file, so extraction fails them, logged.
    for media_id in (on_dead_worker, orphan_uploaded):
        for _ in range(400):
            item, logs, _ = await _state(k, media_id)
            if item.status == "FAILED":
                break
            await asyncio.sleep(0.05)
        assert item.status == "FAILED" and logs[-1].startswith("Status changed to FAILED (Extraction failed:")


def test_step_inference_from_the_last_log_line():
    assert infer_step(None) == "during upload transfer"
    assert infer_step("Status changed to UPLOADED") == "during status persistence after upload"
    assert infer_step("Status changed to FAILED (x)") == "while recovering from previous failure"
    assert infer_step("Published to Hugging Face") == "at unknown pipeline step"
