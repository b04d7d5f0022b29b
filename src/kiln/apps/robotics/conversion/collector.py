"""Fewer garbage collections while a conversion runs (`fewer_collections()`).

A conversion allocates tens of thousands of short-lived, acyclic objects per 500 MB (decoded
messages and their fields, row lists) and holds a row group's worth of them until it is
written. With CPython's default threshold (a collection per 700 net allocations) that is ~60
collections per 500 MB, each traversing the row group in flight, and about one full
collection, which traverses every object the process holds (~45 ms in a bench process, more
in a server): 15-20 % of the decoding thread's CPU time. Raising the first generation's
threshold while conversions run keeps the collector on, only rarer; the previous thresholds
come back when the last running conversion of the process ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CONVERSION_GEN0_THRESHOLD = 100_000  # net allocations between collections while converting

_lock = threading.Lock()
_running = 0
_saved: tuple[int, ...] = ()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect garbage less often for the duration (nested and concurrent uses are counted)."""
    global _running, _saved
    with _lock:
        if _running == 0:
            _saved = gc.get_threshold()
            if 0 < _saved[0] < CONVERSION_GEN0_THRESHOLD:  # 0: automatic collection is off, keep it so
                gc.set_threshold(CONVERSION_GEN0_THRESHOLD, *_saved[1:])
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                gc.set_threshold(*_saved)
