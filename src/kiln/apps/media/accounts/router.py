"""`/api/auth/*`: signup, login, logout, profile — on the core user store."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from kiln.apps.media.accounts.schemas import LoginIn, LoginOut, Message, ProfileIn, SignupIn, UserOut
from kiln.apps.media.deps import MediaUser
from kiln.core.auth import (
    SIGNUP_CLOSED_MESSAGE,
    EmailAlreadyRegistered,
    LoginLimiter,
    PasswordPolicyError,
    User,
    authenticate,
    clear_auth_cookie,
    client_address,
    create_user,
    issue_token_for,
    revoke_presented_token,
    set_auth_cookie,
    signup_open,
    update_profile,
)
from kiln.core.deps import SessionDep, SettingsDep
from kiln.core.errors import MESSAGE_OR_VALIDATION_422

router = APIRouter(prefix="/api/auth", tags=["media: auth"], responses=MESSAGE_OR_VALIDATION_422)


def _user(user: User) -> UserOut:
    return UserOut(id=user.id, email=user.email, full_name=user.full_name, language=user.language)


@router.post("/signup", status_code=201, response_model=Message)
async def signup(body: SignupIn, session: SessionDep, settings: SettingsDep) -> Message:
    if not signup_open(settings):  # KILN_SIGNUP
        raise HTTPException(403, SIGNUP_CLOSED_MESSAGE)
    try:
        await create_user(session, body.email, body.password, full_name=body.full_name or "Unnamed User")
    except EmailAlreadyRegistered:
        raise HTTPException(400, "Email already registered") from None
    except PasswordPolicyError as exc:
        raise HTTPException(422, str(exc)) from None
    await session.commit()
    return Message(message="User created successfully")


@router.post("/login", response_model=LoginOut)
async def login(
    body: LoginIn,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    limiter: LoginLimiter,
) -> LoginOut:
    client = client_address(request)
    decision = limiter.check(body.email, client)
    if not decision.allowed:
        raise HTTPException(
            429, "Too many failed logins; try again later", headers={"Retry-After": decision.retry_after_header}
        )
    user = await authenticate(session, body.email, body.password)
    if user is None or not user.is_active:
        limiter.record_failure(body.email, client)
        raise HTTPException(401, "Invalid email or password")
    limiter.record_success(body.email, client)
    await session.commit()
    set_auth_cookie(response, issue_token_for(settings, user).token, settings)
    return LoginOut(message="Login successful", user=_user(user))


@router.post("/logout", response_model=Message)
async def logout(request: Request, response: Response, settings: SettingsDep) -> Message:
    # Revokes by jti, even an expired token; without a token this is still a clean logout.
    await revoke_presented_token(request)
    clear_auth_cookie(response, settings)
    return Message(message="Logout successful")


@router.get("/me", response_model=UserOut)
async def me(user: MediaUser) -> UserOut:
    return _user(user)


@router.put("/me", response_model=UserOut)
async def update_me(body: ProfileIn, user: MediaUser, session: SessionDep) -> UserOut:
    row = await session.get(User, user.id)
    if row is None:
        raise HTTPException(401, "User not found")
    changes = {k: v for k, v in body.model_dump().items() if v not in (None, "")}  # empty = unchanged
    await update_profile(session, row, **changes)
    await session.commit()
    return _user(row)
