"""Dashboard routes: summary, trends over 1..90 days, blockers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kiln.apps.robotics.dashboard import service as dashboard_service
from kiln.core.deps import SessionDep

router = APIRouter()


# ------------------------------------------------------------------------------ dashboard
@router.get("/dashboard/summary")
async def dashboard_summary(session: SessionDep) -> dict[str, Any]:
    return await dashboard_service.summary(session)


@router.get("/dashboard/trends")
async def dashboard_trends(request: Request, session: SessionDep) -> dict[str, Any]:
    days = dashboard_service.parse_days(request.query_params.get("days"))
    return await dashboard_service.trends(session, days)


@router.get("/dashboard/blockers")
async def dashboard_blockers(session: SessionDep) -> dict[str, int]:
    return await dashboard_service.blockers(session)
