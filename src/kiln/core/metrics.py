"""Prometheus metrics: HTTP requests and latencies (ASGI middleware), jobs by kind/status, queue depth."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiln.core.body_send import body_transparent
from kiln.core.db import Database
from kiln.core.jobs.models import QUEUED, Job


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kiln_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "kiln_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.jobs = Gauge("kiln_jobs", "Jobs by kind and status", ["kind", "status"], registry=self.registry)
        self.queue_depth = Gauge("kiln_queue_depth", "Jobs waiting to run", registry=self.registry)

    async def render(self, db: Database) -> tuple[bytes, str]:
        async with db.session() as session:
            rows = await session.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))
            self.jobs.clear()
            depth = 0
            for kind, status, count in rows:
                self.jobs.labels(kind=kind, status=status).set(count)
                if status == QUEUED:
                    depth += count
            self.queue_depth.set(depth)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


MAX_CACHED_SERIES = 4096


@body_transparent  # its send wrapper reads the start message's status only
class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        # The labelled children by (method, route, status): prometheus' labels() validates and locks
        # on every call. Bounded by the routes, methods and statuses that exist.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _series_for(self, method: str, template: str, status: int) -> tuple[Any, Any]:
        key = (method, template, status)
        series = self._series.get(key)
        if series is None:
            series = (
                self.metrics.requests.labels(method, template, str(status)),
                self.metrics.latency.labels(method, template),
            )
            if len(self._series) < MAX_CACHED_SERIES:
                self._series[key] = series
        return series

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", None)
            # Under a surface's mount the route's path is relative to the prefix (root_path).
            template = scope.get("root_path", "") + path if path else "unmatched"
            requests, latency = self._series_for(scope.get("method", "GET"), template, status)
            requests.inc()
            latency.observe(time.perf_counter() - started)
