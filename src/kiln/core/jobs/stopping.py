"""Bounded waits for a stop: the runner's loops and handlers, the periodic tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


async def wait_then_cancel(tasks: Iterable[asyncio.Task[Any]], timeout: float, what: str) -> set[asyncio.Task[Any]]:
    """Wait up to `timeout` for `tasks` (their own errors are theirs: not raised here), then cancel
    what is left and return it. Unlike awaiting each task under `suppress(BaseException)`, a
    cancel of the caller (a shutdown timeout) is not swallowed."""
    tasks = set(tasks)
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        log.warning("stopping: %d of %s still running after %.0f s; cancelled", len(pending), what, timeout)
        for task in pending:
            task.cancel()
    return pending
