"""Genai dependencies: the caller from the core user store, with its role read from the
database on every request (a demoted or deactivated user loses access at once)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from kiln.apps.genai.config import GenaiSettings, genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.core.auth import ROLE_RANK, AuthContext, DeferredLogin, User, authenticate_connection, authenticate_deferred
from kiln.core.deps import KernelDep, SessionDep

__all__ = [
    "AdminUser",
    "CurrentUser",
    "GenaiSettingsDep",
    "KernelDep",
    "OptionalUser",
    "SessionDep",
    "SuperadminUser",
    "TurnCaller",
    "current_auth",
    "require",
]


async def current_auth(request: Request, session: SessionDep) -> AuthContext:
    """The authenticated context; core auth re-loads the user row by id for every token, in one
    query run in the request's own session (the endpoint's SessionDep is the same session)."""
    context = await authenticate_connection(request, session=session)  # AuthError is rendered by GenaiRoute
    assert context is not None
    return context


async def turn_caller(request: Request, session: SessionDep) -> AuthContext | DeferredLogin:
    """`current_auth` for a route whose own first statement also reads the login's user row and
    revocation (a playground turn: `DeferredLogin`), one statement fewer before its model call."""
    return await authenticate_deferred(request, session=session)


async def current_user(context: Annotated[AuthContext, Depends(current_auth)]) -> User:
    return context.user


async def optional_user(request: Request, session: SessionDep) -> User | None:
    if request.headers.get("authorization") is None and not request.cookies.get("access_token"):
        return None
    return (await current_auth(request, session)).user


def require(role: str) -> Callable[..., Awaitable[User]]:
    """A dependency passing users of `role` or higher; 403 `insufficient_role` below."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(user: Annotated[User, Depends(current_user)]) -> User:
        if not user.has_role(role):
            raise GenaiError(403, "insufficient_role", f"Requires role {role} or higher", {"required_role": role})
        return user

    dependency.__name__ = f"require_{role}"
    return dependency


def get_genai_settings(request: Request) -> GenaiSettings:
    return genai_settings(request.app.state.kernel)


CurrentUser = Annotated[User, Depends(current_user)]
TurnCaller = Annotated[AuthContext | DeferredLogin, Depends(turn_caller)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
AdminUser = Annotated[User, Depends(require("admin"))]
SuperadminUser = Annotated[User, Depends(require("superadmin"))]
GenaiSettingsDep = Annotated[GenaiSettings, Depends(get_genai_settings)]
