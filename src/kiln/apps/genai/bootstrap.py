"""First-request bootstrap of the genai surface, once per process: the configured superadmin, the
seeded platform (`local-default`), built-in registry entities and the quote set.

Every step is idempotent and safe against a concurrent process doing the same (unique keys; a
lost race rolls back and re-reads), so `serve` processes need no coordination.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings

log = logging.getLogger(__name__)
Step = Callable[[AsyncSession, Any], Awaitable[None]]


async def _superadmin(session: AsyncSession, kernel: Any) -> None:
    from kiln.apps.genai.identity.service import ensure_bootstrap_superadmin

    cfg = genai_settings(kernel)
    if await ensure_bootstrap_superadmin(session, cfg.bootstrap_superadmin_email, cfg.bootstrap_superadmin_password):
        log.info("genai: bootstrap superadmin %s created", cfg.bootstrap_superadmin_email)


def steps() -> list[Step]:
    from kiln.apps.genai.catalog.service import ensure_builtin_entities
    from kiln.apps.genai.content.seed import seed_quotes
    from kiln.apps.genai.platform.seed import seed_platform

    async def seed_registry(session: AsyncSession, kernel: Any) -> None:
        await ensure_builtin_entities(session)

    return [_superadmin, seed_platform, seed_registry, seed_quotes]


async def run_bootstrap(kernel: Any) -> None:
    for step in steps():
        for attempt in range(3):
            async with kernel.db.session() as session:
                try:
                    await step(session, kernel)
                    await session.commit()
                    break
                except IntegrityError:
                    await session.rollback()  # another process seeded the same rows; re-read
                    if attempt == 2:
                        raise


async def ensure_bootstrapped(request: Request) -> None:
    """Router dependency: the first request of a process runs the bootstrap; later ones skip."""
    state = request.app.state
    if getattr(state, "genai_bootstrapped", False):
        return
    lock = getattr(state, "genai_bootstrap_lock", None)
    if lock is None:
        lock = state.genai_bootstrap_lock = asyncio.Lock()
    async with lock:
        if not getattr(state, "genai_bootstrapped", False):
            await run_bootstrap(state.kernel)
            state.genai_bootstrapped = True
