"""Media dependencies: the signed-in user with the contract's 401 messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from kiln.apps.media.config import MediaSettings, media_settings
from kiln.core.auth import AuthError, User, authenticate_connection
from kiln.core.deps import SessionDep

# The reference's messages, so its frontend's handling keeps working.
AUTH_MESSAGES = {
    "missing_auth": "Not authenticated",
    "token_expired": "Token expired or invalid",
    "invalid_token": "Token expired or invalid",
    "token_revoked": "Token has been revoked",
    "user_not_found": "User not found",
    "account_inactive": "Account is inactive",
}


async def media_user(request: Request, session: SessionDep) -> User:
    """The caller, looked up in the request's own session: every media route that needs a user
    opens that session anyway (FastAPI resolves SessionDep once per request), so the token is
    checked without a session and a pool checkout of its own."""
    try:
        context = await authenticate_connection(request, session=session)
    except AuthError as exc:
        raise HTTPException(exc.status_code, AUTH_MESSAGES.get(exc.code, exc.detail), headers=exc.headers) from None
    assert context is not None
    return context.user


def get_media_settings(request: Request) -> MediaSettings:
    return media_settings(request.app.state.kernel)


MediaUser = Annotated[User, Depends(media_user)]
MediaSettingsDep = Annotated[MediaSettings, Depends(get_media_settings)]
