"""FastAPI dependencies for authentication, shared by every surface.

A request is authenticated by `Authorization: Bearer <token>` or the HttpOnly cookie (default
`access_token`); WebSockets may also pass `?token=` because browsers cannot set headers there.
The token is a login JWT or an API token (`kiln_...`). The database row, not the token's
`role` claim, is the authority, so role changes and deactivation apply at once. Each lookup
uses its own short session, closed before the endpoint runs. Tokens are never logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, partial
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Response, WebSocketException, status
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from kiln.core.auth.models import ROLE_RANK, ROLES, User
from kiln.core.auth.ratelimit import LoginRateLimiter
from kiln.core.auth.service import login_params, lookup_api_token, revoke_token, user_unless_revoked
from kiln.core.auth.tokens import (
    InvalidToken,
    IssuedToken,
    decode_access_token,
    expires_at_of,
    issue_access_token,
    looks_like_api_token,
)

DEFAULT_COOKIE = "access_token"
WS_POLICY_VIOLATION = 1008
SURFACE_SCOPE_KEY = "kiln.surface"
"""Set by the engine on every request routed to a surface (kiln.surfaces)."""


class AuthError(HTTPException):
    """An HTTPException with a stable `code` (missing_auth, token_expired, insufficient_role, ...),
    so a surface whose contract has its own error shape can translate it."""

    def __init__(self, status_code: int, code: str, detail: str):
        headers = {"WWW-Authenticate": "Bearer"} if status_code == status.HTTP_401_UNAUTHORIZED else None
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.code = code


@dataclass(slots=True)
class AuthContext:
    user: User
    method: Literal["jwt", "api_token"]
    jti: str | None = None
    expires_at: datetime | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    scopes: frozenset[str] | None = None
    """Surfaces an API token is limited to; None = every surface (and always None for logins)."""


def _fail(conn: HTTPConnection, status_code: int, code: str, detail: str) -> Exception:
    if conn.scope["type"] == "websocket":
        # An HTTP error cannot be sent on a socket; 1008 is "policy violation".
        return WebSocketException(code=WS_POLICY_VIOLATION, reason=detail)
    return AuthError(status_code, code, detail)


def _kernel(conn: HTTPConnection) -> Any:
    return conn.app.state.kernel


def surface_of(conn: HTTPConnection) -> str | None:
    """The surface a request belongs to: the name the engine's mount put in the scope, else the
    `kiln.apps.<name>` package of the route's endpoint; None for core routes."""
    name = conn.scope.get(SURFACE_SCOPE_KEY)
    if name:
        return name
    module = getattr(conn.scope.get("endpoint"), "__module__", "") or ""
    parts = module.split(".")
    if len(parts) >= 3 and parts[0] == "kiln" and parts[1] == "apps":
        return parts[2]
    return None


def _scope_refusal(context: AuthContext, surface: str | None) -> str | None:
    """Why an API token may not open `surface`, or None when it may."""
    if surface is None or context.scopes is None or surface in context.scopes:
        return None
    return (
        f"This API token is limited to {', '.join(sorted(context.scopes))} and does not open {surface}; "
        f"create one with `kiln user token EMAIL --scope {surface}`"
    )


def token_from_request(conn: HTTPConnection, cookie_name: str = DEFAULT_COOKIE) -> str | None:
    """The presented token, or None. A malformed Authorization header is an error, not 'no token'."""
    header = conn.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _fail(conn, 401, "invalid_authorization_header", "Authorization header must be 'Bearer <token>'")
        return value.strip()
    cookie = conn.cookies.get(cookie_name)
    if cookie:
        return cookie
    if conn.scope["type"] == "websocket":
        return conn.query_params.get("token") or None
    return None


async def authenticate_token(
    kernel: Any,
    token: str,
    conn: HTTPConnection | None = None,
    *,
    surface: str | None = None,
    session: AsyncSession | None = None,
) -> AuthContext:
    """Resolve a token to its active user or raise AuthError (WebSocketException when `conn` is a socket).

    Usable outside dependencies, e.g. by a WebSocket route that receives the token in a message
    (pass `surface=surface_of(websocket)` so an API token scoped to other surfaces is refused: 403
    `token_scope`). With `conn`, the surface comes from it. With `session` (the request's own), the
    lookup runs in it instead of a short session of its own, sparing a connection checkout and its
    reset; an API token's last_used_at is then committed in it. The user comes back detached either
    way, so a later rollback of the request's session cannot expire it.
    """

    def fail(status_code: int, code: str, detail: str) -> Exception:
        if conn is None:
            return AuthError(status_code, code, detail)
        return _fail(conn, status_code, code, detail)

    if session is None:
        async with kernel.db.sessions() as own:
            return await _authenticate_in(own, kernel, token, conn, surface, fail)
    return await _authenticate_in(session, kernel, token, conn, surface, fail)


async def _authenticate_in(
    session: AsyncSession,
    kernel: Any,
    token: str,
    conn: HTTPConnection | None,
    surface: str | None,
    fail: Callable[[int, str, str], Exception],
) -> AuthContext:
    if looks_like_api_token(token):
        found = await lookup_api_token(session, token)
        if found is None:
            raise fail(401, "invalid_token", "API token invalid, expired or revoked; create a new one")
        await session.commit()  # persists last_used_at
        session.expunge(found[1])
        context = AuthContext(user=found[1], method="api_token", scopes=found[0].scope_set)
        refusal = _scope_refusal(context, surface or (surface_of(conn) if conn is not None else None))
        if refusal is not None:
            raise fail(403, "token_scope", refusal)
        return context
    claims = _login_claims(kernel, token, fail)
    user, revoked = await user_unless_revoked(session, claims["sub"], claims["jti"])
    return _login_context(session, claims, user, revoked, fail)


def _login_claims(kernel: Any, token: str, fail: Callable[[int, str, str], Exception]) -> dict[str, Any]:
    """A login JWT's claims once its signature and expiry check out (no database read)."""
    try:
        return decode_access_token(kernel.settings.resolved_secret_key, token)
    except InvalidToken as exc:
        code = "token_expired" if exc.reason == "expired" else "invalid_token"
        raise fail(401, code, exc.message) from None


def _login_context(
    session: AsyncSession,
    claims: dict[str, Any],
    user: User | None,
    revoked: bool,
    fail: Callable[[int, str, str], Exception],
) -> AuthContext:
    """The context of a login JWT from its user row and revocation as read, or the failure."""
    if revoked:
        raise fail(401, "token_revoked", "Token has been revoked; log in again")
    if user is None:
        raise fail(401, "user_not_found", "User not found; log in again")
    session.expunge(user)
    if not user.is_active:
        raise fail(401, "account_inactive", "Account is inactive; ask an administrator to activate it")
    return AuthContext(user=user, method="jwt", jti=claims["jti"], expires_at=expires_at_of(claims), claims=claims)


@dataclass(slots=True)
class DeferredLogin:
    """A login JWT whose signature and expiry check out but whose user row and revocation are not
    read yet (`authenticate_deferred`).

    For a route that reads the database anyway: its own statement joins `User` on
    `User.id == LOGIN_USER_ID`, selects `LOGIN_REVOKED` (both from `kiln.core.auth.service`) and
    is bound with `params`; `complete` then takes what it read and answers or fails exactly as
    `authenticate_connection` does. Where that statement found nothing to say (no row), `resolve`
    reads them alone. The check is not skipped, only folded into a statement the route runs anyway:
    one statement fewer before, say, a streamed turn's model call.
    """

    conn: HTTPConnection
    claims: dict[str, Any]

    @property
    def user_id(self) -> str:
        return self.claims["sub"]

    @property
    def params(self) -> dict[str, str]:
        return login_params(self.claims["sub"], self.claims["jti"])

    def complete(self, session: AsyncSession, user: User | None, revoked: bool) -> AuthContext:
        """The context from the user row (detached from `session`) and revocation the caller read."""
        context = _login_context(session, self.claims, user, revoked, partial(_fail, self.conn))
        self.conn.state.auth = context
        return context

    async def resolve(self, session: AsyncSession) -> AuthContext:
        user, revoked = await user_unless_revoked(session, self.claims["sub"], self.claims["jti"])
        return self.complete(session, user, revoked)


async def authenticate_deferred(
    conn: HTTPConnection, *, session: AsyncSession, cookie_name: str = DEFAULT_COOKIE
) -> AuthContext | DeferredLogin:
    """`authenticate_connection`, except that a login JWT's database check is left to the caller's
    own statement (`DeferredLogin`); an API token is looked up as usual."""
    token = token_from_request(conn, cookie_name)
    if token is None or looks_like_api_token(token):
        context = await authenticate_connection(conn, cookie_name=cookie_name, session=session)
        assert context is not None
        return context
    return DeferredLogin(conn, _login_claims(_kernel(conn), token, partial(_fail, conn)))


def auth_context_dependency(
    cookie_name: str = DEFAULT_COOKIE, optional: bool = False
) -> Callable[[HTTPConnection], Awaitable[AuthContext | None]]:
    """The dependency that authenticates a connection; the result is also left on `conn.state.auth`.

    Built once per arguments, so FastAPI's per-request cache resolves a token only once.
    """
    return _auth_context_dependency(cookie_name, optional)


@cache
def _auth_context_dependency(
    cookie_name: str, optional: bool
) -> Callable[[HTTPConnection], Awaitable[AuthContext | None]]:

    async def dependency(conn: HTTPConnection) -> AuthContext | None:
        return await authenticate_connection(conn, cookie_name=cookie_name, optional=optional)

    return dependency


async def authenticate_connection(
    conn: HTTPConnection,
    *,
    cookie_name: str = DEFAULT_COOKIE,
    optional: bool = False,
    session: AsyncSession | None = None,
) -> AuthContext | None:
    """What the auth dependencies do (the context is also left on `conn.state.auth`); a surface
    that opens the request's database session anyway passes it as `session` (see authenticate_token)."""
    token = token_from_request(conn, cookie_name)
    if token is None:
        if optional:
            return None
        raise _fail(
            conn,
            401,
            "missing_auth",
            "Not authenticated; send 'Authorization: Bearer <token>' or log in to get the cookie",
        )
    context = await authenticate_token(_kernel(conn), token, conn, session=session)
    conn.state.auth = context
    return context


def current_user_dependency(cookie_name: str = DEFAULT_COOKIE) -> Callable[..., Awaitable[User]]:
    return _current_user_dependency(cookie_name)


@cache
def _current_user_dependency(cookie_name: str) -> Callable[..., Awaitable[User]]:
    context_dep = auth_context_dependency(cookie_name, False)

    # A default, not Annotated: string annotations cannot name a closure variable.
    async def dependency(context: AuthContext = Depends(context_dep)) -> User:
        return context.user

    return dependency


def optional_user_dependency(cookie_name: str = DEFAULT_COOKIE) -> Callable[..., Awaitable[User | None]]:
    """No token gives None; a bad or revoked token is still an error, so clients learn to log in again."""
    return _optional_user_dependency(cookie_name)


@cache
def _optional_user_dependency(cookie_name: str) -> Callable[..., Awaitable[User | None]]:
    context_dep = auth_context_dependency(cookie_name, True)

    async def dependency(context: AuthContext | None = Depends(context_dep)) -> User | None:
        return context.user if context is not None else None

    return dependency


get_auth_context = auth_context_dependency()
get_current_user = current_user_dependency(DEFAULT_COOKIE)
get_optional_user = optional_user_dependency(DEFAULT_COOKIE)

CurrentAuth = Annotated[AuthContext, Depends(get_auth_context)]
CurrentUser = Annotated[User, Depends(get_current_user)]
OptionalUser = Annotated[User | None, Depends(get_optional_user)]


def require_role(role: str, *, cookie_name: str = DEFAULT_COOKIE) -> Callable[..., Awaitable[User]]:
    """Dependency passing users whose role is `role` or higher (user < admin < superadmin); 403 below.

    Use as `user: User = Depends(require_role("admin"))` or in a router's `dependencies=[...]`.
    """
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
    current = current_user_dependency(cookie_name)

    async def dependency(conn: HTTPConnection, user: User = Depends(current)) -> User:
        if not user.has_role(role):
            detail = f"Requires role {role} or higher; your role is {user.role}"
            raise _fail(conn, 403, "insufficient_role", detail)
        return user

    return dependency


async def open_surface_guard(conn: HTTPConnection) -> User | None:
    """For surfaces whose contract has no auth: open while `token_required_on_open_surfaces` is
    False (loopback by default). Otherwise only an API token whose scopes include the surface
    (401 without a valid token, 403 for a token scoped elsewhere) or a login of role admin or
    higher (403 for a plain user) gets in."""
    if not _kernel(conn).settings.token_required_on_open_surfaces:
        return None
    context = await auth_context_dependency(DEFAULT_COOKIE, False)(conn)
    assert context is not None
    if context.method == "api_token" or context.user.has_role("admin"):
        return context.user  # an API token's scopes were checked when it was resolved
    surface = surface_of(conn)
    needs = (
        f"{surface} needs an API token scoped to it (an administrator runs `kiln user token EMAIL --scope {surface}`)"
        if surface
        else "This API needs an API token (an administrator runs `kiln user token EMAIL`)"
    )
    detail = f"{needs} or a login of role admin or higher; your role is {context.user.role}"
    raise _fail(conn, 403, "insufficient_role", detail)


OpenSurfaceGuard = Depends(open_surface_guard)
"""Put in a router's or app's `dependencies=[OpenSurfaceGuard]`."""


# --- helpers for login / logout routes ----------------------------------------------------


def issue_token_for(settings: Any, user: User) -> IssuedToken:
    return issue_access_token(settings.resolved_secret_key, user.id, user.role, settings.access_token_minutes)


def set_auth_cookie(response: Response, token: str, settings: Any, *, cookie_name: str = DEFAULT_COOKIE) -> None:
    response.set_cookie(
        cookie_name,
        token,
        max_age=settings.cookie_minutes * 60,
        path="/",
        httponly=True,
        # Browsers drop SameSite=None cookies that are not Secure, so None implies Secure.
        secure=settings.cookie_secure or settings.cookie_samesite == "none",
        samesite=settings.cookie_samesite,
    )


def clear_auth_cookie(response: Response, settings: Any, *, cookie_name: str = DEFAULT_COOKIE) -> None:
    # Same attributes as when set, or some browsers keep the original cookie.
    response.delete_cookie(
        cookie_name,
        path="/",
        httponly=True,
        secure=settings.cookie_secure or settings.cookie_samesite == "none",
        samesite=settings.cookie_samesite,
    )


async def revoke_presented_token(conn: HTTPConnection, *, cookie_name: str = DEFAULT_COOKIE) -> bool:
    """For logout: revoke the request's login JWT if its signature checks out (even if expired).

    Returns whether a token was revoked. API tokens are not touched (they are revoked by id).
    """
    try:
        token = token_from_request(conn, cookie_name)
    except (AuthError, WebSocketException):
        return False
    if token is None or looks_like_api_token(token):
        return False
    kernel = _kernel(conn)
    try:
        claims = decode_access_token(kernel.settings.resolved_secret_key, token, verify_exp=False)
    except InvalidToken:
        return False
    async with kernel.db.sessions() as session:
        await revoke_token(session, claims["jti"], claims["sub"], expires_at_of(claims))
        await session.commit()
    return True


def core_route_guard(public_setting: str) -> Callable[[HTTPConnection], Awaitable[None]]:
    """Dependency for engine routes (/docs, /openapi.json, /metrics): open on loopback or when the
    boolean setting `public_setting` is true; otherwise any valid token (401 without)."""

    async def dependency(conn: HTTPConnection) -> None:
        settings = _kernel(conn).settings
        if not settings.token_required_on_open_surfaces or getattr(settings, public_setting):
            return
        await auth_context_dependency(DEFAULT_COOKIE, False)(conn)

    return dependency


def get_login_limiter(conn: HTTPConnection) -> LoginRateLimiter:
    """One login limiter per application, created on first use."""
    state = conn.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = state.login_limiter = LoginRateLimiter()
    return limiter


LoginLimiter = Annotated[LoginRateLimiter, Depends(get_login_limiter)]
