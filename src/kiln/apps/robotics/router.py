"""Robotics HTTP routes: the surface router (guard, read limits, error shape) that mounts each
domain's router (assets/, authoring/, conversion/, dashboard/), plus health and jobs.

Routers only parse, call a service function and shape the answer; errors are raised as
`RoboticsError` and rendered as `{"detail": "..."}` by the handler `install()` registers.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from kiln.apps.robotics import jobs_service
from kiln.apps.robotics.assets.router import router as assets_router
from kiln.apps.robotics.authoring.router import router as authoring_router
from kiln.apps.robotics.config import robotics_settings
from kiln.apps.robotics.conversion.router import router as conversions_router
from kiln.apps.robotics.dashboard.router import router as dashboard_router
from kiln.apps.robotics.deps import RoboticsSettingsDep
from kiln.apps.robotics.views import job_view
from kiln.core.auth.deps import OpenSurfaceGuard
from kiln.core.deps import KernelDep, SessionDep
from kiln.core.errors import MESSAGE_OR_VALIDATION_422
from kiln.core.params import Offset


async def _apply_read_limits(kernel: KernelDep) -> None:
    """Readers in this process bound chunk sizes by KILN_ROBOTICS_MAX_CHUNK_MB."""
    robotics_settings(kernel).apply_read_limits()


router = APIRouter(
    dependencies=[OpenSurfaceGuard, Depends(_apply_read_limits)], tags=["robotics"], responses=MESSAGE_OR_VALIDATION_422
)
# The domains' paths only meet under /conversions: authoring's inspect, draft and preview are
# POST only, so GET /conversions/{conversion_id} never takes them.
for domain_router in (conversions_router, authoring_router, dashboard_router, assets_router):
    router.include_router(domain_router)


@router.get("/health")
async def health(cfg: RoboticsSettingsDep) -> dict[str, str]:
    return {"status": "ok", "app_name": cfg.app_name}


# ------------------------------------------------------------------------------ jobs
@router.get("/jobs")
async def list_jobs(
    session: SessionDep,
    type: Annotated[str | None, Query(description="index | convert")] = None,  # noqa: A002 - contract name
    status: Annotated[str | None, Query(description="queued | running | succeeded | failed | cancelled")] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    return await jobs_service.list_jobs(session, type, status, limit, offset)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, session: SessionDep) -> dict[str, Any]:
    return job_view(await jobs_service.get_job(session, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await jobs_service.cancel_job(session, kernel.jobs, job_id)


@router.post("/jobs/{job_id}/retry")
async def retry_job(job_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await jobs_service.retry_job(session, kernel.jobs, job_id)
