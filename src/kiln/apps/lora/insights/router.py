"""Analytics, dashboard and system routes."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from kiln.apps.lora.deps import LoraSettingsDep
from kiln.apps.lora.errors import LoraRoute
from kiln.apps.lora.insights import analytics, status
from kiln.core.deps import KernelDep, SessionDep

router = APIRouter(route_class=LoraRoute, tags=["lora: analytics"])
Range = Literal["24h", "7d", "30d"]


@router.get("/analytics/summary")
async def summary(session: SessionDep, time_range: Range = "24h") -> dict[str, Any]:
    return await analytics.summary(session, time_range)


@router.get("/analytics/stats")
async def stats(session: SessionDep, time_range: Range = "24h") -> dict[str, Any]:
    return await analytics.stats(session, time_range)


@router.get("/analytics/errors")
async def errors(session: SessionDep, time_range: Range = "24h") -> list[dict[str, Any]]:
    return await analytics.errors(session, time_range)


@router.get("/analytics/timeseries")
async def timeseries(session: SessionDep, time_range: Range = "24h") -> dict[str, Any]:
    return await analytics.timeseries(session, time_range)


@router.get("/analytics/insights")
async def insights(session: SessionDep, time_range: Range = "24h") -> list[dict[str, Any]]:
    return await analytics.insights(session, time_range)


@router.get("/dashboard/stats")
async def dashboard_stats(session: SessionDep, kernel: KernelDep, cfg: LoraSettingsDep) -> dict[str, Any]:
    return await status.dashboard_stats(session, kernel, cfg)


@router.get("/dashboard/featured-loras")
async def featured(session: SessionDep) -> list[dict[str, Any]]:
    return await status.featured(session)


@router.get("/dashboard/activity-feed")
async def activity(session: SessionDep) -> list[dict[str, Any]]:
    return await status.activity(session)


@router.get("/system/status")
async def system_status(session: SessionDep, kernel: KernelDep, cfg: LoraSettingsDep) -> dict[str, Any]:
    return await status.system_status(session, kernel, cfg)
