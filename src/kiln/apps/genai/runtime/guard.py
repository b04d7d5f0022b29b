"""The runtime profile wired into the shared HTTP client's offline guard.

Every genai provider client gets `offline_guard(kernel)`; `install` also sets it process-wide, so
any surface's cloud-origin client is refused while the profile is offline. The guard reads the
profile from the database on each cloud-origin call (local calls never ask), so a switch made by
another process applies at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.runtime.service import is_offline
from kiln.providers.http import set_offline_guard


def offline_guard(kernel: Any) -> Callable[[], Awaitable[bool]]:
    async def guard() -> bool:
        settings = genai_settings(kernel)
        if settings.runtime_profile_force:
            return settings.runtime_profile_force != "online"
        async with kernel.db.sessions() as session:
            return await is_offline(session, settings)

    return guard


def process_guard(app: FastAPI) -> Callable[[], Awaitable[bool]]:
    """The process-wide guard of a running app (set at start-up, cleared at shutdown)."""
    ref = weakref.ref(app)

    async def guard() -> bool:
        current = ref()
        kernel = getattr(current.state, "kernel", None) if current is not None else None
        if kernel is None:  # no genai server running in this process: no profile to enforce
            return False
        return await offline_guard(kernel)()

    return guard


def install_process_guard(app: FastAPI) -> Callable[[], Awaitable[bool]]:
    guard = process_guard(app)
    set_offline_guard(guard)
    return guard


def clear_process_guard() -> None:
    set_offline_guard(None)
