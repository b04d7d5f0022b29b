"""Group commit: concurrent callers' writes share one transaction.

While one flush is in flight, new items queue up; the next flush takes them all. An idle
system pays no extra latency, a busy one pays one transaction per batch instead of per job.

A flush must be all or nothing (one transaction). With `retry_alone=True`, when a grouped flush
fails each of its items is flushed again alone, so one bad item (a constraint or a value the
others did not break) fails only its own caller instead of every caller that happened to share
its transaction: for writers whose items carry caller data (media status changes, arted run
rows). The engine's claims and finishes keep it off: their statements carry no per-caller data,
so a failure is the database's (locked, gone) and retrying every item alone would only multiply
the load on a database that is already failing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        flush: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 256,
        retry_alone: bool = False,
    ):
        self._flush = flush
        self._max_batch = max_batch
        self._retry_alone = retry_alone
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.flushes = self.failed_groups = 0  # how grouping goes (tests, benches)

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(0)  # let callers scheduled in this tick join the batch
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                if not await self._settle(batch):
                    self.failed_groups += 1
                    for index, one in enumerate(batch):  # the group's transaction was rolled back: each alone
                        try:
                            await self._settle([one])
                        except BaseException as exc:  # cancelled: the rest get no answer either
                            _fail(batch[index + 1 :], exc)
                            raise
        except BaseException as exc:
            # Cancelled (the loop is closing): the callers queued for the next batch saw this drain
            # still running and started none of their own; they would wait for good.
            queued, self._pending = self._pending, []
            _fail(queued, exc)
            raise

    async def _settle(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> bool:
        """Flush `batch` and resolve its callers; False (callers untouched) when a group failed."""
        self.flushes += 1
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1 and self._retry_alone:
                return False
            _fail(batch, exc)
            return True
        except BaseException as exc:  # cancelled: nobody of this batch gets an answer
            _fail(batch, exc)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        return True


def _fail(batch: Sequence[tuple[object, asyncio.Future[Result]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
