"""Job handlers, periodic tasks and start-up clean-ups, registered at import time of a surface's `jobs.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.core.jobs.context import JobContext

Handler = Callable[["JobContext", dict[str, Any]], Awaitable[Any]]
PeriodicFn = Callable[[Any], Awaitable[None]]
CleanupFn = Callable[[Any], Awaitable[int]]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    fn: Handler
    surface: str | None
    max_attempts: int | None


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    fn: PeriodicFn
    every: float


_handlers: dict[str, HandlerSpec] = {}
_periodic: dict[str, PeriodicSpec] = {}
_cleanups: dict[str, CleanupFn] = {}


def job_handler(kind: str, *, surface: str | None = None, max_attempts: int | None = None):
    """Register `fn(ctx, payload)` as the handler of jobs of `kind`."""

    def register(fn: Handler) -> Handler:
        _handlers[kind] = HandlerSpec(kind, fn, surface, max_attempts)
        return fn

    return register


def periodic(name: str, *, every: float):
    """Register `fn(kernel)` to run every `every` seconds (in one process of the deployment)."""

    def register(fn: PeriodicFn) -> PeriodicFn:
        _periodic[name] = PeriodicSpec(name, fn, every)
        return fn

    return register


def startup_cleanup(name: str):
    """Register `fn(kernel) -> int` to run when an embedded `kiln serve` starts, before any job:
    it repairs what a crash of the previous process left half-done and returns how many things
    it cleaned (logged and kept in `kernel.startup_report`)."""

    def register(fn: CleanupFn) -> CleanupFn:
        _cleanups[name] = fn
        return fn

    return register


def startup_cleanups() -> dict[str, CleanupFn]:
    return dict(_cleanups)


def get_handler(kind: str) -> HandlerSpec | None:
    return _handlers.get(kind)


def handler_kinds() -> list[str]:
    return sorted(_handlers)


def periodic_tasks() -> list[PeriodicSpec]:
    return list(_periodic.values())
