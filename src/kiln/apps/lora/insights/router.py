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


def _analytics_route(name: str) -> None:
    compute = getattr(analytics, name)

    async def route(session: SessionDep, time_range: Range = "24h") -> Any:
        return await compute(session, time_range)

    route.__name__ = f"analytics_{name}"
    router.add_api_route(f"/analytics/{name}", route, methods=["GET"], name=f"analytics_{name}")


for _name in ("summary", "stats", "errors", "timeseries", "insights"):
    _analytics_route(_name)


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
