"""GroupCommit: concurrent items share a flush, and one bad item fails only its own caller."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from kiln.core.jobs.batching import GroupCommit


class Bad(Exception):
    pass


def recording_flush(flushed: list[list[int]]):
    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        await asyncio.sleep(0)
        if any(item < 0 for item in items):  # all or nothing, as one transaction
            raise Bad(f"negative item among {list(items)}")
        return [item * 10 for item in items]

    return flush


async def test_concurrent_items_share_one_flush() -> None:
    flushed: list[list[int]] = []
    group = GroupCommit(recording_flush(flushed))
    assert await asyncio.gather(*(group.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert flushed == [[0, 1, 2, 3, 4]]


async def test_a_bad_item_fails_alone_and_its_neighbours_are_written() -> None:
    flushed: list[list[int]] = []
    group = GroupCommit(recording_flush(flushed), retry_alone=True)
    results = await asyncio.gather(*(group.submit(i) for i in (1, 2, -3, 4)), return_exceptions=True)
    assert results[:2] == [10, 20] and results[3] == 40
    assert isinstance(results[2], Bad) and "[-3]" in str(results[2])  # its own flush's error
    assert flushed == [[1, 2, -3, 4], [1], [2], [-3], [4]]
    assert group.failed_groups == 1


async def test_without_retry_alone_a_failed_group_fails_every_caller_once() -> None:
    """The engine's claims and finishes: a failed flush is the database's, not an item's, and is
    not repeated once per item."""
    flushed: list[list[int]] = []
    group = GroupCommit(recording_flush(flushed))
    results = await asyncio.gather(*(group.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert all(isinstance(r, Bad) for r in results)
    assert flushed == [[1, -2, 3]]
    assert await group.submit(4) == 40  # and the group keeps working


async def test_a_lone_failing_item_is_not_flushed_twice() -> None:
    flushed: list[list[int]] = []
    group = GroupCommit(recording_flush(flushed), retry_alone=True)
    with pytest.raises(Bad):
        await group.submit(-1)
    assert flushed == [[-1]]
    assert await group.submit(2) == 20  # and the group keeps working


async def test_cancelling_the_drain_answers_every_waiting_caller() -> None:
    started = asyncio.Event()

    async def stuck(items: Sequence[int]) -> list[int]:
        started.set()
        await asyncio.sleep(10)
        return list(items)

    group = GroupCommit(stuck)
    callers = [asyncio.create_task(group.submit(i)) for i in range(3)]
    await started.wait()
    assert group._drainer is not None
    group._drainer.cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)


async def test_a_caller_queued_while_the_drain_is_being_cancelled_is_answered() -> None:
    """At shutdown every task is cancelled at once: a job cancelled in the same sweep writes its
    last step after the drain was cancelled but before it ended. It used to wait for good (the
    drain that would take its item was gone), which hung the event loop's close."""
    started = asyncio.Event()

    async def stuck_once(items: Sequence[int]) -> list[int]:
        if not started.is_set():
            started.set()
            await asyncio.sleep(10)
        return list(items)

    group = GroupCommit(stuck_once)
    first = asyncio.create_task(group.submit(1))
    await started.wait()
    assert group._drainer is not None
    late = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)  # queued behind the flush in flight, for the next batch
    assert len(group._pending) == 1
    group._drainer.cancel()
    results = await asyncio.wait_for(asyncio.gather(first, late, return_exceptions=True), 2)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert group._pending == []
    assert await asyncio.wait_for(group.submit(3), 2) == 3  # a new drain serves the callers that come after
