"""Child processes that never outlive Kiln, and job process pools that a cancel really stops.

Every process Kiln starts for CPU work runs `child_init` first:

* Linux `prctl(PR_SET_PDEATHSIG, SIGKILL)`: the kernel kills the child when its parent dies,
  even by `kill -9` (no handler can ignore SIGKILL);
* a watch on the server process itself (a pidfd, polled by a daemon thread), for children whose
  direct parent is not the server (the forkserver's children) or whose parent outlives it;
* the CPU-step priority (`nice`).

`JobProcesses` is the set of process pools one job started (`ctx.process_pool(...)`); the runner
kills them all when the job's cancel grace period is over, so work spread over several
processes stops within `KILN_JOB_CANCEL_GRACE_SECONDS` (+ the kernel's reaping time).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watch(server_pid: int) -> None:
    """Exit at once when `server_pid` ends (or has ended already)."""
    if server_pid == os.getpid():
        return
    try:
        fd = os.pidfd_open(server_pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):  # no pidfd (old kernel, not Linux): fall back to polling
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while True:
                try:
                    os.kill(server_pid, 0)
                except ProcessLookupError:
                    break
                except PermissionError:
                    pass
                threading.Event().wait(0.5)
        os._exit(1)

    threading.Thread(target=wait, name="kiln-parent-watch", daemon=True).start()


def child_init(
    server_pid: int, nice: int = 0, initializer: Callable[..., Any] | None = None, initargs: tuple[Any, ...] = ()
) -> None:
    """Initializer of every Kiln child process (see the module doc), then the caller's own."""
    _set_parent_death_signal()
    _watch(server_pid)
    if nice and hasattr(os, "nice"):
        os.nice(nice)
    if initializer is not None:
        initializer(*initargs)


def kill_pool(executor: ProcessPoolExecutor) -> None:
    """SIGKILL every process of `executor` and drop its pending work."""
    for _ in range(3):  # the dict may grow while a pool spawns on demand
        try:
            processes = list((getattr(executor, "_processes", None) or {}).values())
            break
        except RuntimeError:
            continue
    else:
        processes = []
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)


class JobProcesses:
    """Process pools started for one job; `kill()` stops all of them."""

    def __init__(self, nice: int = 0):
        self.nice = nice
        self._pools: list[ProcessPoolExecutor] = []
        self._lock = threading.Lock()
        self.killed = False

    def pool(
        self,
        max_workers: int,
        *,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> ProcessPoolExecutor:
        """A `ProcessPoolExecutor` whose processes die with the server and with this job's cancel.
        Callable from any thread (a handler's blocking code in `ctx.run_blocking`)."""
        context = mp_context or multiprocessing.get_context("spawn")
        executor = ProcessPoolExecutor(
            max_workers,
            mp_context=context,
            initializer=child_init,
            initargs=(os.getpid(), self.nice, initializer, initargs),
        )
        with self._lock:
            self._pools.append(executor)
            killed = self.killed
        if killed:
            kill_pool(executor)
        return executor

    def kill(self) -> int:
        """Kill every pool's processes; returns how many pools there were."""
        with self._lock:
            self.killed = True
            pools, self._pools = list(self._pools), []
        for executor in pools:
            kill_pool(executor)
        if pools:
            log.info("killed the processes of %d pool(s) of a cancelled job", len(pools))
        return len(pools)
