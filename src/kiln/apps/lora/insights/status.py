"""Dashboard and system status, measured: SDNext probed, broker pinged, disk and GPU read.

GPU figures come only from a GPU (nvidia-smi); without one they are absent, never system RAM.
Warnings describe the present (no GPU, a backlog, SDNext unreachable, recent failures), not
one failure long ago.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.generation.jobs import sdnext_client
from kiln.apps.lora.generation.service import KINDS
from kiln.apps.lora.models import Adapter, Embedding
from kiln.core import system
from kiln.core.db import utcnow
from kiln.core.jobs import Job
from kiln.providers.sdnext import SDNextError

ICONS = {"queued": "⏳", "running": "🔄", "succeeded": "✅", "failed": "❌", "cancelled": "🚫"}
STARTED = time.monotonic()


async def probe_sdnext(cfg: LoraSettings) -> dict[str, Any]:
    if not cfg.sdnext_url:
        return {"configured": False, "reachable": False}
    try:
        async with sdnext_client(cfg) as client:
            options = await asyncio.wait_for(client.options(), 5)
    except (SDNextError, TimeoutError) as exc:
        return {"configured": True, "reachable": False, "error": str(exc)[:200]}
    return {"configured": True, "reachable": True, "model": options.get("sd_model_checkpoint")}


async def _active_jobs(session: AsyncSession) -> tuple[int, int]:
    queued, running = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((Job.status == "queued", 1), else_=0)), 0),
                func.coalesce(func.sum(case((Job.status == "running", 1), else_=0)), 0),
            ).where(Job.kind.in_(KINDS), Job.status.in_(("queued", "running")))
        )
    ).one()
    return int(queued), int(running)


def _gb(value: int | None) -> str:
    return f"{(value or 0) / 1024**3:.1f} GB"


async def system_status(session: AsyncSession, kernel: Any, cfg: LoraSettings) -> dict[str, Any]:
    snap, sdnext = await asyncio.gather(asyncio.to_thread(system.snapshot, cfg.dir), probe_sdnext(cfg))
    try:
        broker_ok = bool(await asyncio.wait_for(kernel.broker.ping(), 3))
    except Exception:  # reported, not raised: this route says what is down
        broker_ok = False
    queued, running = await _active_jobs(session)
    since = utcnow() - timedelta(hours=1)
    recent_failed = int(
        await session.scalar(
            select(func.count())
            .select_from(Job)
            .where(Job.kind.in_(KINDS), Job.status == "failed", Job.finished_at >= since)
        )
        or 0
    )
    gpus = snap["gpus"]
    gpu = gpus[0] if gpus else None
    warnings = []
    if not gpus:
        warnings.append("No GPU detected on the Kiln host (generation runs on the SDNext server)")
    if sdnext["configured"] and not sdnext["reachable"]:
        warnings.append("SDNext is not reachable")
    if not sdnext["configured"]:
        warnings.append("SDNext is not configured (KILN_SDNEXT_URL)")
    if queued + running > 5:
        warnings.append("Queue backlog is growing")
    if recent_failed:
        warnings.append(f"{recent_failed} generation(s) failed in the last hour")
    if not broker_ok:
        warnings.append("Job broker is not reachable")
    now = utcnow().isoformat()
    memory, disk = snap["memory"], snap["disk"]
    mb = 1024 * 1024
    healthy = broker_ok and (not sdnext["configured"] or sdnext["reachable"])
    return {
        "gpu_available": bool(gpus),
        "queue_length": queued + running,
        "status": "healthy" if healthy else "warning",
        "gpu_status": gpu["name"] if gpu else "GPU unavailable",
        "memory_used": round((gpu or {}).get("memory_used_bytes") or 0) // mb,
        "memory_total": round((gpu or {}).get("memory_total_bytes") or 0) // mb,
        "active_workers": running,
        "backend": "in-process" if kernel.settings.embedded else "broker",
        "broker": {"reachable": broker_ok, "embedded": kernel.settings.embedded},
        "sdnext": sdnext,
        "queue_eta_seconds": None,
        "last_updated": now,
        "updated_at": now,
        "message": "; ".join(warnings) if warnings else "All systems operational",
        "warnings": warnings,
        "disk": {
            "path": "KILN_LORA_DIR",
            "used": disk["used_bytes"] // mb,
            "total": disk["total_bytes"] // mb,
            "percent": disk["percent"],
        },
        "metrics": {
            "cpu_percent": snap["cpu_percent"],
            "memory_percent": memory["percent"],
            "memory_used": memory["used_bytes"] // mb,
            "memory_total": memory["total_bytes"] // mb,
            "disk_percent": disk["percent"],
            "disk_used": disk["used_bytes"] // mb,
            "disk_total": disk["total_bytes"] // mb,
            "gpus": [
                {
                    "id": g.get("index"),
                    "name": g.get("name"),
                    "memory_used": (g.get("memory_used_bytes") or 0) // mb,
                    "memory_total": (g.get("memory_total_bytes") or 0) // mb,
                    "utilization": g.get("utilization_percent"),
                    "temperature": g.get("temperature_c"),
                }
                for g in gpus
            ],
            "uptime_seconds": round(time.monotonic() - STARTED, 1),
            "timestamp": now,
        },
    }


async def dashboard_stats(session: AsyncSession, kernel: Any, cfg: LoraSettings) -> dict[str, Any]:
    total, active = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((Adapter.active.is_(True), 1), else_=0)), 0)).select_from(
                Adapter
            )
        )
    ).one()
    embedded = int(await session.scalar(select(func.count()).select_from(Embedding)) or 0)
    since = utcnow() - timedelta(hours=24)
    recent = int(
        await session.scalar(
            select(func.count())
            .select_from(Adapter)
            .where(func.coalesce(Adapter.last_ingested_at, Adapter.created_at) >= since)
        )
        or 0
    )
    queued, running = await _active_jobs(session)
    status = await system_status(session, kernel, cfg)
    gpu_memory = (
        f"{status['memory_used'] / 1024:.1f} GB / {status['memory_total'] / 1024:.1f} GB"
        if status["gpu_available"] and status["memory_total"]
        else "n/a"
    )
    return {
        "stats": {
            "total_loras": int(total),
            "active_loras": int(active),
            "embeddings_coverage": round(100 * embedded / total) if total else 0,
            "recent_imports": recent,
            "active_jobs": queued + running,
        },
        "system_health": {
            "status": status["status"],
            "gpu_status": status["gpu_status"],
            "gpu_memory": gpu_memory,
            "queue_status": "active" if queued + running else "idle",
            "storage_usage": f"{status['disk']['percent']:.0f}%",
            "sdnext": status["sdnext"],
        },
    }


async def featured(session: AsyncSession, limit: int = 5) -> list[dict[str, Any]]:
    rows = (
        await session.scalars(
            select(Adapter)
            .where(Adapter.active.is_(True))
            .order_by(func.coalesce(Adapter.updated_at, Adapter.created_at).desc(), Adapter.name)
            .limit(limit)
        )
    ).all()
    return [
        {
            "id": a.id,
            "name": a.name,
            "version": a.version,
            "tags": list(a.tags or []),
            "active": a.active,
            "civitai_url": None,
            "description": a.description,
        }
        for a in rows
    ]


async def activity(session: AsyncSession, limit: int = 10) -> list[dict[str, Any]]:
    rows = (
        await session.scalars(
            select(Job).where(Job.kind.in_(KINDS)).order_by(Job.created_at.desc(), Job.id).limit(limit)
        )
    ).all()
    out = []
    for job in rows:
        payload = job.payload or {}
        prompt = str(payload.get("prompt") or "")
        status = {"queued": "pending"}.get(job.status, job.status)
        out.append(
            {
                "id": job.id,
                "type": status,
                "status": status,
                "message": f"Delivery job '{prompt[:80]}' {status}",
                "mode": payload.get("mode_name") or payload.get("backend"),
                "prompt": prompt,
                "timestamp": job.created_at.isoformat(),
                "icon": ICONS.get(job.status, "•"),
            }
        )
    return out
