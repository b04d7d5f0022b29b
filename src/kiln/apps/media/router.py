"""The media contract's routes: `/`, `/api/health`, and the sub-routers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, HTTPException
from sqlalchemy import text

from kiln.apps.media.accounts import router as routes_auth
from kiln.apps.media.dashboard import router as routes_dashboard
from kiln.apps.media.map import router as routes_map
from kiln.apps.media.vault import router as routes_media
from kiln.core.deps import KernelDep

router = APIRouter()


@router.get("/", tags=["media"])
async def root() -> dict[str, str]:
    return {"message": "Hyperion API is running"}


@router.get("/api/health", tags=["media"])
async def health(kernel: KernelDep) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with kernel.db.session() as session:
            await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=3)
    except Exception as exc:  # reported, not raised: this route exists to say the database is down
        raise HTTPException(
            503,
            {
                "status": "unhealthy",
                "timestamp": time.time(),
                "components": {"api": "up", "database": "down"},
                "error": f"database unreachable ({type(exc).__name__})",
            },
        ) from None
    return {
        "status": "healthy",
        "timestamp": time.time(),
        "components": {"api": "up", "database": "up"},
        "database_latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


router.include_router(routes_auth.router)
router.include_router(routes_dashboard.router)
router.include_router(routes_media.router)
router.include_router(routes_map.router)
