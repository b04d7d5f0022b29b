"""Analytics from the job history (`lora.generate` and `lora.deliver` jobs), nothing invented.

Windows are now−Δ..now (24h / 7d / 30d) against the Δ before; series are zero-filled hourly
(24h) or daily buckets. LoRA usage counts the `<lora:NAME:…>` tokens of the window's
prompts matched to adapters by file stem or alias. There is no resource series: Kiln keeps
no history of CPU/GPU samples, so it reports none rather than a made-up one.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.generation.service import KINDS
from kiln.apps.lora.models import Adapter
from kiln.core.db import utcnow
from kiln.core.jobs import Job

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
TOKEN = re.compile(r"<lora:([^:>]{1,512}):")
MAX_ROWS = 200_000


async def _rows(session: AsyncSession, start: datetime, end: datetime) -> list[Any]:
    stmt = (
        select(Job.status, Job.created_at, Job.started_at, Job.finished_at, Job.error, Job.payload)
        .where(Job.kind.in_(KINDS), Job.created_at >= start, Job.created_at < end)
        .limit(MAX_ROWS)
    )
    return list((await session.execute(stmt)).all())


def _durations(rows: list[Any]) -> list[float]:
    out = []
    for r in rows:
        if r.started_at and r.finished_at and r.finished_at >= r.started_at and r.status == "succeeded":
            out.append((r.finished_at - r.started_at).total_seconds())
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _rate(rows: list[Any]) -> float | None:
    ok = sum(1 for r in rows if r.status == "succeeded")
    bad = sum(1 for r in rows if r.status == "failed")
    return 100.0 * ok / (ok + bad) if ok + bad else None


async def _counts(session: AsyncSession) -> tuple[int, int]:
    total, active = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(case((Adapter.active.is_(True), 1), else_=0)), 0)).select_from(
                Adapter
            )
        )
    ).one()
    return int(total or 0), int(active or 0)


async def stats(session: AsyncSession, time_range: str) -> dict[str, Any]:
    return (await _window(session, time_range))["kpis"]


async def _window(session: AsyncSession, time_range: str) -> dict[str, Any]:
    span = RANGES[time_range]
    now = utcnow()
    current = await _rows(session, now - span, now)
    previous = await _rows(session, now - 2 * span, now - span)
    avg, prev_avg = _mean(_durations(current)), _mean(_durations(previous))
    total, active = await _counts(session)
    rate = _rate(current)
    kpis = {
        "total_generations": len(current),
        "generation_growth": round((len(current) - len(previous)) / len(previous) * 100, 2) if previous else 0.0,
        "avg_generation_time": round(avg, 2),
        "time_improvement": round(-(avg - prev_avg) / prev_avg * 100, 2) if prev_avg and avg else 0.0,
        "success_rate": round(rate, 2) if rate is not None else 0.0,
        "total_failed": sum(1 for r in current if r.status == "failed"),
        "active_loras": active,
        "total_loras": total,
    }
    return {"now": now, "span": span, "rows": current, "kpis": kpis, "rate": rate}


def _error_entries(rows: list[Any]) -> list[dict[str, Any]]:
    failed = [(r.error or "Unknown error").strip()[:300] or "Unknown error" for r in rows if r.status == "failed"]
    counts = Counter(failed)
    return [
        {"type": message, "count": n, "percentage": round(100.0 * n / len(failed), 2), "description": message}
        for message, n in counts.most_common(20)
    ]


async def errors(session: AsyncSession, time_range: str) -> list[dict[str, Any]]:
    return _error_entries((await _window(session, time_range))["rows"])


def _buckets(now: datetime, span: timedelta) -> tuple[list[datetime], timedelta]:
    step = timedelta(hours=1) if span <= timedelta(hours=24) else timedelta(days=1)
    if step == timedelta(hours=1):
        last = now.replace(minute=0, second=0, microsecond=0)
    else:
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    count = int(span / step)
    return [last - step * i for i in range(count - 1, -1, -1)], step


def _series(rows: list[Any], now: datetime, span: timedelta) -> dict[str, list[dict[str, Any]]]:
    starts, step = _buckets(now, span)
    first = starts[0]
    grouped: dict[int, list[Any]] = {}
    for r in rows:
        index = int((r.created_at - first) / step)
        if 0 <= index < len(starts):
            grouped.setdefault(index, []).append(r)
    volume, performance = [], []
    for i, start in enumerate(starts):
        bucket = grouped.get(i, [])
        rate = _rate(bucket)
        volume.append({"timestamp": start.isoformat(), "count": len(bucket)})
        performance.append(
            {
                "timestamp": start.isoformat(),
                "avg_time": round(_mean(_durations(bucket)), 2),
                "success_rate": round(rate, 2) if rate is not None else 0.0,
            }
        )
    return {"generation_volume": volume, "performance": performance}


async def timeseries(session: AsyncSession, time_range: str) -> dict[str, Any]:
    w = await _window(session, time_range)
    return {
        **_series(w["rows"], w["now"], w["span"]),
        "lora_usage": await _usage(session, w["rows"]),
        "resource_usage": [],
    }


async def _usage(session: AsyncSession, rows: list[Any]) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    for r in rows:
        prompt = (r.payload or {}).get("prompt") if isinstance(r.payload, dict) else None
        if isinstance(prompt, str):
            counts.update({name.casefold() for name in TOKEN.findall(prompt)})
    if not counts:
        return []
    names = list(counts)[:1000]
    adapters = (
        await session.execute(
            select(Adapter.name, Adapter.file_stem, Adapter.alias).where(
                or_(func.lower(Adapter.file_stem).in_(names), func.lower(Adapter.alias).in_(names))
            )
        )
    ).all()
    usage: Counter[str] = Counter()
    for name, stem, alias in adapters:
        keys = {k.casefold() for k in (stem, alias) if k}
        usage[name] += max((counts.get(k, 0) for k in keys), default=0)
    return [{"name": n, "usage_count": c} for n, c in usage.most_common(20) if c]


def _insights(kpis: dict[str, Any], rate: float | None, errs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if rate is not None and rate < 90:
        found.append(
            {
                "title": "Declining success rate",
                "severity": "high",
                "recommendation": "review_failed_jobs",
                "description": f"Only {rate:.1f}% of finished generations succeeded in this period.",
            }
        )
    if kpis["time_improvement"] < 0:
        found.append(
            {
                "title": "Generation time regression",
                "severity": "medium",
                "recommendation": "investigate_performance",
                "description": f"Average generation time rose by {-kpis['time_improvement']:.1f}%.",
            }
        )
    if errs and errs[0]["percentage"] >= 25:
        found.append(
            {
                "title": f"Frequent error: {errs[0]['type'][:80]}",
                "severity": "medium",
                "recommendation": "analyse_error_trends",
                "description": f"{errs[0]['percentage']:.1f}% of failures share this message.",
            }
        )
    for i, item in enumerate(found, 1):
        item["id"] = f"insight-{i}"
    if found:
        return found
    if not kpis["total_generations"]:
        return [
            {
                "id": "insight-no-data",
                "title": "No generations yet",
                "severity": "low",
                "description": "There is no job history in this period.",
                "recommendation": "start_generating",
            }
        ]
    return [
        {
            "id": "insight-stable",
            "title": "Stable performance",
            "severity": "low",
            "description": "No regressions detected in this period.",
            "recommendation": "keep_monitoring",
        }
    ]


async def insights(session: AsyncSession, time_range: str) -> list[dict[str, Any]]:
    w = await _window(session, time_range)
    return _insights(w["kpis"], w["rate"], _error_entries(w["rows"]))


async def summary(session: AsyncSession, time_range: str) -> dict[str, Any]:
    w = await _window(session, time_range)
    errs = _error_entries(w["rows"])
    charts = {
        **_series(w["rows"], w["now"], w["span"]),
        "lora_usage": await _usage(session, w["rows"]),
        "resource_usage": [],
    }
    return {
        "time_range": time_range,
        "generated_at": w["now"].isoformat(),
        "kpis": w["kpis"],
        "chart_data": charts,
        "error_breakdown": errs,
        "performance_insights": _insights(w["kpis"], w["rate"], errs),
    }
