"""`/api/dashboard/*`: the worker fleet, dispatch, system health, user experience."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from kiln.apps.media.dashboard import fleet, system_load, ux
from kiln.apps.media.dashboard.schemas import DispatchIn, DispatchOut
from kiln.apps.media.deps import MediaUser
from kiln.apps.media.processing.status import publish_all
from kiln.core.deps import KernelDep, SessionDep
from kiln.core.errors import MESSAGE_OR_VALIDATION_422

router = APIRouter(prefix="/api/dashboard", tags=["media: dashboard"], responses=MESSAGE_OR_VALIDATION_422)


@router.get("/ai-workers")
async def ai_workers(user: MediaUser, kernel: KernelDep, session: SessionDep) -> dict[str, Any]:
    return await fleet.fleet(kernel, session, user.id)


@router.post("/ai-workers/dispatch", status_code=202, response_model=DispatchOut)
async def dispatch(
    user: MediaUser,
    kernel: KernelDep,
    session: SessionDep,
    body: DispatchIn | None = None,
    media_id: uuid.UUID | None = Query(default=None),
) -> JSONResponse:
    """Queue (again) one of your media items for processing by the fleet: 202 with the job id."""
    target = str(media_id) if media_id is not None else (body.media_id.lower() if body else None)
    if target is None:
        raise HTTPException(422, "media_id is required (query parameter or JSON body)")
    try:
        job_id, event, queue = await fleet.dispatch(kernel, session, user.id, target)
    except fleet.DispatchRefused as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    await publish_all(kernel.events, [event])
    out = DispatchOut(
        message=f"Task {job_id} dispatched to the Titan fleet.",
        job_id=job_id,
        media_id=target,
        action="process",
        queue_size=queue,
    )
    return JSONResponse(out.model_dump(), status_code=202)


@router.get("/system-health")
async def system_health(user: MediaUser, kernel: KernelDep, session: SessionDep) -> dict[str, Any]:
    return await system_load.system_health(kernel, session)


@router.get("/user-experience")
async def user_experience(user: MediaUser, kernel: KernelDep, session: SessionDep) -> dict[str, Any]:
    return await ux.user_experience(kernel, session)
