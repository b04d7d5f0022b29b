"""`/auth/*` and `/v1/auth/me`: login (bearer JWT with a revocable `jti`), logout, register,
users admin. Roles are read from the database on every request."""

from __future__ import annotations

from typing import Any

from fastapi import Query, Request

from kiln.apps.genai.config import signup_open
from kiln.apps.genai.deps import AdminUser, CurrentUser, KernelDep, OptionalUser, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.identity import service
from kiln.apps.genai.identity.schemas import LoginBody, RegisterBody, RoleBody
from kiln.core import auth as core_auth
from kiln.core.auth import LoginLimiter

router = genai_router(tags=["genai"])


@router.post("/auth/register", status_code=201)
async def register(body: RegisterBody, actor: OptionalUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    user = await service.register(
        session,
        actor=actor,
        email=body.email,
        username=body.username,
        password=body.password,
        role=body.role,
        is_active=body.is_active,
        signup_open=signup_open(kernel),
    )
    await session.commit()
    return {"user": service.user_dto(user)}


@router.post("/auth/login")
async def login(
    body: LoginBody, request: Request, session: SessionDep, kernel: KernelDep, limiter: LoginLimiter
) -> dict[str, Any]:
    identifier = (body.identifier or body.email or body.username or "").strip()
    if not identifier or not body.password:
        raise GenaiError(400, "missing_credentials", "Identifier and password are required")
    client = core_auth.client_address(request)
    decision = limiter.check(identifier, client)
    if not decision.allowed:
        raise GenaiError(
            429,
            "too_many_attempts",
            "Too many failed logins; try again later",
            {"retry_after_seconds": int(decision.retry_after) + 1},
            headers={"Retry-After": decision.retry_after_header},
        )
    try:
        user = await core_auth.authenticate(session, identifier, body.password)
    except BaseException:
        release = getattr(limiter, "release", None)  # settles a reserved attempt, in builds that reserve
        if release is not None:
            release(identifier, client)
        raise
    if user is None:
        limiter.record_failure(identifier, client)
        raise GenaiError(401, "invalid_credentials", "Invalid credentials")
    limiter.record_success(identifier, client)
    if not user.is_active:
        raise GenaiError(403, "account_inactive", "Account pending activation")
    issued = core_auth.issue_token_for(kernel.settings, user)
    await session.commit()
    return {
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_in": kernel.settings.access_token_minutes * 60,
        "user": service.user_dto(user),
    }


@router.post("/auth/logout")
async def logout(request: Request, user: CurrentUser) -> dict[str, Any]:
    # The token is revoked by its jti: it stops working at once, unlike the reference's no-op.
    await core_auth.revoke_presented_token(request)
    return {"logged_out": True}


@router.get("/auth/me")
async def me(user: CurrentUser) -> dict[str, Any]:
    return {"user": service.user_dto(user)}


@router.get("/v1/auth/me")
async def me_v1(user: CurrentUser) -> dict[str, Any]:
    dto = service.user_dto(user)
    return {"user": {key: dto[key] for key in ("id", "email", "username", "role", "is_active")}}


@router.get("/auth/users")
async def list_users(
    actor: AdminUser, session: SessionDep, status: str | None = Query(default=None, max_length=16)
) -> dict[str, Any]:
    status = (status or "").strip().lower() or None
    if status not in (None, "pending", "active"):
        raise GenaiError(400, "invalid_status", "status must be one of: pending, active")
    return {"users": [service.user_dto(user) for user in await service.users(session, status)]}


@router.post("/auth/users/{user_id}/activate")
async def activate(user_id: str, actor: AdminUser, session: SessionDep) -> dict[str, Any]:
    user = await service.activate(session, actor, user_id, True)
    await session.commit()
    return {"user": service.user_dto(user)}


@router.post("/auth/users/{user_id}/deactivate")
async def deactivate(user_id: str, actor: AdminUser, session: SessionDep) -> dict[str, Any]:
    user = await service.activate(session, actor, user_id, False)
    await session.commit()
    return {"user": service.user_dto(user)}


@router.patch("/auth/users/{user_id}/role")
async def update_role(user_id: str, body: RoleBody, actor: SuperadminUser, session: SessionDep) -> dict[str, Any]:
    user = await service.change_role(session, user_id, body.role)
    await session.commit()
    return {"user": service.user_dto(user)}
