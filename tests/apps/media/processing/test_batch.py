"""Status transitions of concurrent jobs share transactions; one bad op fails only its caller."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from kiln.apps.media.models import MediaItem, MediaTaskLog
from kiln.apps.media.processing import batch
from kiln.apps.media.processing.status import transition
from tests.apps.media.mediakit import add_media, register, settings  # noqa: F401  (fixture)


async def _items(kernel, user_id: str, n: int) -> list[MediaItem]:
    ids = [await add_media(kernel, user_id, status="UPLOADED") for _ in range(n)]
    async with kernel.db.session() as session:
        return list(await session.scalars(select(MediaItem).where(MediaItem.id.in_(ids))))


async def _step(kernel, item: MediaItem):
    async def op(session):
        return await transition(session, item, "EXTRACTING", worker="Helios", expect=("UPLOADED",))

    return await batch.run(kernel, op)


async def _logs(kernel, ids: list[str]) -> int:
    async with kernel.db.session() as session:
        return int(
            await session.scalar(select(func.count()).select_from(MediaTaskLog).where(MediaTaskLog.media_id.in_(ids)))
        )


async def test_concurrent_steps_share_one_transaction(app, client):
    kernel = app.state.kernel
    user = await register(client, "ann@example.com")
    items = await _items(kernel, user["id"], 5)
    before = batch.batcher(kernel).transactions
    events = await asyncio.gather(*(_step(kernel, item) for item in items))
    assert batch.batcher(kernel).transactions - before == 1  # five steps, one commit
    assert [e.status for e in events] == ["EXTRACTING"] * 5 and {e.media_id for e in events} == {i.id for i in items}
    async with kernel.db.session() as session:
        statuses = set(await session.scalars(select(MediaItem.status).where(MediaItem.id.in_([i.id for i in items]))))
    assert statuses == {"EXTRACTING"}
    assert await _logs(kernel, [i.id for i in items]) == 5  # the log rows, in one insert
    # A step whose condition no longer holds answers None, inside the same kind of group.
    again = await asyncio.gather(*(_step(kernel, item) for item in items[:2]))
    assert again == [None, None]


async def test_a_failing_op_fails_alone(app, client):
    kernel = app.state.kernel
    user = await register(client, "ann@example.com")
    items = await _items(kernel, user["id"], 3)
    taken = items[0].id

    async def bad(session):
        # A second row with an existing primary key: the database refuses it.
        await session.execute(
            insert(MediaItem.__table__).values(
                id=taken,
                user_id=user["id"],
                status="PENDING",
                filename="x.jpg",
                blob_key="x",
                has_trash=False,
                attempts=0,
            )
        )

    results = await asyncio.gather(
        _step(kernel, items[1]), batch.run(kernel, bad), _step(kernel, items[2]), return_exceptions=True
    )
    assert results[0].status == "EXTRACTING" and results[2].status == "EXTRACTING"
    assert isinstance(results[1], IntegrityError)
    assert await _logs(kernel, [items[1].id, items[2].id]) == 2
    with pytest.raises(IntegrityError):
        await batch.run(kernel, bad)
