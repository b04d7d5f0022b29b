"""`/v1/runtime/profile`: read by any user, written by a superadmin."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.deps import CurrentUser, GenaiSettingsDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.runtime import service
from kiln.apps.genai.runtime.schemas import ProfileBody

router = genai_router(tags=["genai"])


@router.get("/v1/runtime/profile")
async def get_profile(user: CurrentUser, session: SessionDep, settings: GenaiSettingsDep) -> dict[str, Any]:
    return (await service.profile_state(session, settings)).dto()


@router.put("/v1/runtime/profile")
async def put_profile(
    body: ProfileBody, user: SuperadminUser, session: SessionDep, settings: GenaiSettingsDep
) -> dict[str, Any]:
    if not body.profile.strip():
        raise GenaiError(400, "invalid_profile", "profile is required")
    state = await service.set_profile(session, settings, body.profile, user.id)
    await session.commit()
    return state.dto()
