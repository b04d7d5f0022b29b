"""The READY transaction of a `media.process` job also ends the job (`ctx.complete_in`): one
commit carries the item's READY and the job's SUCCEEDED, and the engine writes no outcome of its
own. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from kiln.apps.media.models import MediaItem
from kiln.core.jobs import SUCCEEDED, Worker
from tests.apps.media.mediakit import photo, register, settings, upload, wait_status  # noqa: F401  (fixture)
from tests.core.test_job_complete_in import _Transactions


async def test_ready_commit_carries_the_jobs_end(app, client):
    kernel = app.state.kernel
    await register(client, "ann@example.com")
    with _Transactions(kernel) as seen:
        response = await upload(client, ("a.jpg", photo(size=(640, 480)), "image/jpeg"))
        assert response.status_code == 201, response.text
        (media_id,) = response.json()["media_ids"]
        await wait_status(client, media_id, {"READY"})
        async with kernel.db.session() as session:
            job_id = await session.scalar(select(MediaItem.job_id).where(MediaItem.id == media_id))
        deadline = time.monotonic() + 10
        while (job := await kernel.jobs.get(job_id)).status != SUCCEEDED:
            assert time.monotonic() < deadline, job.status
            await asyncio.sleep(0.02)
    assert job.result == {"media_id": media_id, "detections": None} and job.progress == 1.0
    (ready,) = [
        t for t in seen.committed if any(s.startswith("UPDATE media_items SET status") and "'READY'" in s for s in t)
    ]
    assert any(s.startswith("UPDATE jobs SET status=") and job_id in s and "succeeded" in s for s in ready)
    assert any(s.startswith("UPDATE workers SET status") and job_id in s for s in ready)
    outcomes = [s for s in seen.all if job_id in s and (s.startswith("UPDATE jobs SET status=") or "WITH v AS" in s)]
    assert len(outcomes) == 1  # the engine wrote no outcome of its own
    async with kernel.db.session() as session:
        assert not list(await session.scalars(select(Worker.name).where(Worker.current_job_id == job_id)))
