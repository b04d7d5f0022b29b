"""User-experience metrics: who is active, how fast responses are, daily unique users.

The middleware only touches memory (a dict and a histogram: microseconds per request); the
counters are flushed to the database every `ux_flush_seconds` by a background task, so every
process (and every replica) contributes and nothing is lost on restart. The user comes from
the verified JWT's `sub` (cached per token), never from a database lookup per request.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from kiln.apps.media.config import media_settings
from kiln.apps.media.models import MediaResponseStats, MediaUserActivity
from kiln.core.auth import DEFAULT_COOKIE, InvalidToken, decode_access_token
from kiln.core.db import utcnow

log = logging.getLogger(__name__)
BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)  # last bucket: above


class UxTracker:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, datetime], list[Any]] = {}
        self._reset_timings()
        self._tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.last_flush = time.monotonic()
        self._flushing: asyncio.Task[None] | None = None

    def _reset_timings(self) -> None:
        self.count, self.total_ms, self.max_ms = 0, 0.0, 0.0
        self.histogram = [0] * (len(BOUNDS_MS) + 1)

    def user_of(self, token: str, secret: str) -> str | None:
        cached = self._tokens.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            claims = decode_access_token(secret, token)
        except InvalidToken:
            return None
        self._tokens[token] = (claims["sub"], float(claims["exp"]))
        if len(self._tokens) > 4096:
            self._tokens.popitem(last=False)
        return claims["sub"]

    def record(self, user_id: str | None, ms: float, now: datetime) -> None:
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        self.histogram[bisect.bisect_left(BOUNDS_MS, ms)] += 1
        if user_id:
            key = (user_id, now.replace(minute=0, second=0, microsecond=0))
            entry = self._seen.get(key)
            if entry is None:
                self._seen[key] = [now, 1]
            else:
                entry[0], entry[1] = now, entry[1] + 1

    def due(self, interval: float) -> bool:
        return time.monotonic() - self.last_flush >= interval and (self._flushing is None or self._flushing.done())

    def schedule_flush(self, kernel: Any) -> None:
        self.last_flush = time.monotonic()
        self._flushing = asyncio.get_running_loop().create_task(self._safe_flush(kernel))

    async def _safe_flush(self, kernel: Any) -> None:
        try:
            await self.flush(kernel)
        except Exception:  # metrics must never break requests; the next flush retries
            log.warning("media ux: flush failed", exc_info=True)

    async def flush(self, kernel: Any) -> None:
        seen, self._seen = self._seen, {}
        timings = (self.count, self.total_ms, self.max_ms, self.histogram)
        self._reset_timings()
        self.last_flush = time.monotonic()
        if not seen and not timings[0]:
            return
        now = utcnow()
        async with kernel.db.session() as session:
            insert = sqlite_insert if kernel.db.is_sqlite else pg_insert
            for (user_id, hour), (last_seen, requests) in seen.items():
                stmt = insert(MediaUserActivity).values(
                    user_id=user_id, hour=hour, last_seen_at=last_seen, requests=requests
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["user_id", "hour"],
                    set_={
                        "last_seen_at": func.max(MediaUserActivity.last_seen_at, stmt.excluded.last_seen_at)
                        if kernel.db.is_sqlite
                        else func.greatest(MediaUserActivity.last_seen_at, stmt.excluded.last_seen_at),
                        "requests": MediaUserActivity.requests + stmt.excluded.requests,
                    },
                )
                await session.execute(stmt)
            if timings[0]:
                session.add(
                    MediaResponseStats(
                        at=now,
                        count=timings[0],
                        total_ms=round(timings[1], 3),
                        max_ms=round(timings[2], 3),
                        histogram=timings[3],
                    )
                )
            cutoff = now - timedelta(days=8)
            await session.execute(delete(MediaResponseStats).where(MediaResponseStats.at < cutoff))
            await session.execute(delete(MediaUserActivity).where(MediaUserActivity.hour < cutoff))
            await session.commit()


def tracker_for(kernel: Any) -> UxTracker:
    tracker = kernel.__dict__.get("media_ux")
    if tracker is None:
        tracker = kernel.__dict__["media_ux"] = UxTracker()
    return tracker


class UxMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware task overhead); HTTP only, like the reference."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self._record(scope, (time.perf_counter() - started) * 1000)

    @staticmethod
    def _record(scope: Scope, ms: float) -> None:
        kernel = getattr(scope["app"].state, "kernel", None) if "app" in scope else None
        if kernel is None:
            return
        tracker = tracker_for(kernel)
        token = HTTPConnection(scope).cookies.get(DEFAULT_COOKIE)
        user_id = tracker.user_of(token, kernel.settings.resolved_secret_key) if token else None
        tracker.record(user_id, ms, utcnow())
        if tracker.due(media_settings(kernel).ux_flush_seconds):
            tracker.schedule_flush(kernel)


def _percentile(histogram: list[int], fraction: float) -> float | None:
    total = sum(histogram)
    if not total:
        return None
    target, running = fraction * total, 0
    for i, n in enumerate(histogram):
        running += n
        if running >= target:
            return float(BOUNDS_MS[i]) if i < len(BOUNDS_MS) else float(BOUNDS_MS[-1])
    return float(BOUNDS_MS[-1])


async def user_experience(kernel: Any, session: AsyncSession) -> dict[str, Any]:
    cfg = media_settings(kernel)
    await tracker_for(kernel).flush(kernel)  # this process's latest counters count too
    now = utcnow()
    active_now = await session.scalar(
        select(func.count(func.distinct(MediaUserActivity.user_id))).where(
            MediaUserActivity.last_seen_at >= now - timedelta(seconds=cfg.active_user_seconds)
        )
    )
    hour0 = now.replace(minute=0, second=0, microsecond=0)
    hours = [hour0 - timedelta(hours=6 - i) for i in range(7)]
    per_hour = dict(
        (
            await session.execute(
                select(MediaUserActivity.hour, func.count(func.distinct(MediaUserActivity.user_id)))
                .where(MediaUserActivity.hour >= hours[0])
                .group_by(MediaUserActivity.hour)
            )
        ).all()
    )
    day0 = hour0.replace(hour=0)
    days = [day0 - timedelta(days=6 - i) for i in range(7)]
    rows = (
        await session.execute(
            select(MediaUserActivity.user_id, MediaUserActivity.hour).where(MediaUserActivity.hour >= days[0])
        )
    ).all()
    uniques: dict[str, set[str]] = {}
    for user_id, hour in rows:
        uniques.setdefault(hour.date().isoformat(), set()).add(user_id)
    stats = (
        (await session.execute(select(MediaResponseStats).where(MediaResponseStats.at >= now - timedelta(hours=1))))
        .scalars()
        .all()
    )
    count = sum(s.count for s in stats)
    histogram = [sum(col) for col in zip(*(s.histogram for s in stats), strict=True)] if stats else []
    return {
        "active_now": int(active_now or 0),
        "active_trend": [int(per_hour.get(h, 0)) for h in hours],
        "avg_response_time": round(sum(s.total_ms for s in stats) / count, 2) if count else 0.0,
        "p50_response_time": _percentile(histogram, 0.5),
        "p95_response_time": _percentile(histogram, 0.95),
        "requests_last_hour": count,
        "daily_activity": [len(uniques.get(d.date().isoformat(), ())) for d in days],
        "last_updated": now.isoformat(),
    }
