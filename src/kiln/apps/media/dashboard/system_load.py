"""System health for the dashboard: current readings from kiln.core.system, and a 7-day load
history built from samples persisted on a timer (not from calls to the endpoint)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.media.config import media_settings
from kiln.apps.media.models import MediaLoadSample
from kiln.core import system
from kiln.core.db import utcnow


def classify(load: float) -> str:
    if load > 95:
        return "STRESSED"
    if load > 80:
        return "HEAVY_LOAD"
    if load < 30:
        return "STABILIZED"
    return "ACTIVE"


def _readings(home: str) -> dict[str, Any]:
    snap = system.snapshot(home)
    cpu = float(snap["cpu_percent"])
    mem = float(snap["memory"].get("percent") or 0.0)
    return {"cpu": round(cpu, 1), "memory": round(mem, 1), "load": round(max(cpu, mem), 1), "snapshot": snap}


async def current_readings(kernel: Any) -> dict[str, Any]:
    # Reading cgroup files and psutil blocks briefly; keep it off the event loop.
    return await asyncio.to_thread(_readings, str(kernel.settings.home))


async def record_load_sample(kernel: Any, now: datetime | None = None) -> None:
    cfg = media_settings(kernel)
    now = now or utcnow()
    reading = await current_readings(kernel)
    async with kernel.db.session() as session:
        session.add(
            MediaLoadSample(at=now, cpu_percent=reading["cpu"], memory_percent=reading["memory"], load=reading["load"])
        )
        await session.execute(
            delete(MediaLoadSample).where(MediaLoadSample.at < utcnow() - timedelta(days=cfg.load_retention_days))
        )
        await session.commit()


async def daily_history(session: AsyncSession, now: datetime, days: int = 7) -> list[dict[str, Any]]:
    """Mean and peak load per UTC day, oldest first; days without samples have load None."""
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        await session.execute(select(MediaLoadSample.at, MediaLoadSample.load).where(MediaLoadSample.at >= start))
    ).all()
    buckets: dict[str, list[float]] = {}
    for at, load in rows:
        buckets.setdefault(at.date().isoformat(), []).append(load)
    out = []
    for i in range(days):
        day = (start + timedelta(days=i)).date().isoformat()
        values = buckets.get(day, [])
        out.append(
            {
                "day": day,
                "samples": len(values),
                "load": round(sum(values) / len(values), 1) if values else None,
                "peak": round(max(values), 1) if values else None,
            }
        )
    return out


async def system_health(kernel: Any, session: AsyncSession) -> dict[str, Any]:
    now = utcnow()
    reading = await current_readings(kernel)
    history = await daily_history(session, now)
    samples = await session.scalar(select(func.count()).select_from(MediaLoadSample))
    uptime_s = float(reading["snapshot"]["uptime_seconds"])
    return {
        "uptime": round(min(100.0, uptime_s / 86400 * 100), 1),
        "uptime_seconds": uptime_s,
        "server_load": [d["load"] if d["load"] is not None else 0.0 for d in history],
        "load_history": history,
        "cpu_percent": reading["cpu"],
        "memory_percent": reading["memory"],
        "current_load": reading["load"],
        "environment": media_settings(kernel).environment,
        "runtime": reading["snapshot"]["environment"],  # host or container, as measured
        "status": classify(reading["load"]),
        "samples": int(samples or 0),
        "last_updated": now.isoformat(),
    }
