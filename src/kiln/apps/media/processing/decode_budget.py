"""The decode-memory budget shared by the running media steps of one process.

A step reserves what its decode will hold (``imaging.decode_cost_bytes``) before handing the
image to the CPU pool, and waits while the steps already decoding hold too much of
``KILN_MEDIA_DECODE_BUDGET_MB``. Ten worker slots fed ten large images at once then decode a
few at a time instead of all together. Reservations are served first come, first served, so a
large image is not starved by a stream of small ones; one larger than the whole budget waits
for the budget to be free and then runs alone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from kiln.apps.media.config import media_settings

MB = 1024 * 1024


class DecodeBudget:
    def __init__(self, total_bytes: int) -> None:
        self.total = max(1, int(total_bytes))
        self.in_use = 0
        self.peak = 0  # highest in_use seen (tests, diagnostics)
        self.waits = 0  # reservations that had to wait
        self._queue: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _grant(self) -> None:
        while self._queue:
            nbytes, future = self._queue[0]
            if future.done():  # its waiter was cancelled
                self._queue.popleft()
                continue
            if self.in_use + nbytes > self.total:
                return
            self._queue.popleft()
            self._take(nbytes)
            future.set_result(None)

    def _take(self, nbytes: int) -> None:
        self.in_use += nbytes
        self.peak = max(self.peak, self.in_use)

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[int]:
        """Hold ``nbytes`` (at most the whole budget) for the duration of the block."""
        nbytes = min(max(0, int(nbytes)), self.total)
        if not self._queue and self.in_use + nbytes <= self.total:
            self._take(nbytes)
        else:
            self.waits += 1
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue.append((nbytes, future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():  # granted just as it was cancelled
                    self._release(nbytes)
                raise
        try:
            yield nbytes
        finally:
            self._release(nbytes)

    def _release(self, nbytes: int) -> None:
        self.in_use -= nbytes
        self._grant()


_budgets: weakref.WeakKeyDictionary[Any, DecodeBudget] = weakref.WeakKeyDictionary()


def decode_budget(kernel: Any) -> DecodeBudget:
    """The kernel's budget (one per process); a changed setting takes effect once it is idle."""
    total = media_settings(kernel).decode_budget_mb * MB
    budget = _budgets.get(kernel)
    if budget is None or (budget.total != total and budget.in_use == 0 and not budget._queue):
        budget = _budgets[kernel] = DecodeBudget(total)
    return budget
