"""Users, roles, password hashing, tokens and FastAPI dependencies shared by every surface.

Routes:
    user: CurrentUser                        401 without a valid token (Bearer header or cookie)
    user: OptionalUser                       None without a token; a bad token is still 401
    auth: CurrentAuth                        user plus method ("jwt" | "api_token"), jti, expiry
    Depends(require_role("admin"))           403 below admin (user < admin < superadmin)
    APIRouter(dependencies=[OpenSurfaceGuard])   contracts without auth: open on loopback only
    current_user_dependency("other_cookie")  same, reading another cookie name
Errors are AuthError (an HTTPException with `.code`: missing_auth, invalid_authorization_header,
token_expired, invalid_token, token_revoked, user_not_found, account_inactive, insufficient_role)
so a surface with its own error shape can translate them; on a WebSocket they close with 1008.

Login (the surface shapes the body):
    decision = limiter.check(email, client_address(request))   # limiter: LoginLimiter
    user = await authenticate(session, email, password)  # None: limiter.record_failure(...)
    (check() reserves the attempt; record_failure / record_success settle it)
    if not user.is_active: ...                            # the surface decides 401/403
    issued = issue_token_for(kernel.settings, user); await session.commit()
    set_auth_cookie(response, issued.token, kernel.settings)
Signup: `if not signup_open(settings): 403 SIGNUP_CLOSED_MESSAGE` (or Depends(require_signup_open)).
Logout: `await revoke_presented_token(request)` then `clear_auth_cookie(response, settings)`.
WebSocket with a token in a message: `await authenticate_token(kernel, token)`.
A hot route that reads the database anyway: `caller = await authenticate_deferred(request, session=s)`;
a DeferredLogin's user row and revocation ride in the route's own statement (DeferredLogin).
Service functions only flush; the caller commits.
"""

from kiln.core.auth.deps import (
    DEFAULT_COOKIE,
    AuthContext,
    AuthError,
    CurrentAuth,
    CurrentUser,
    DeferredLogin,
    LoginLimiter,
    OpenSurfaceGuard,
    OptionalUser,
    authenticate_connection,
    authenticate_deferred,
    authenticate_token,
    clear_auth_cookie,
    core_route_guard,
    current_user_dependency,
    get_auth_context,
    get_current_user,
    get_login_limiter,
    get_optional_user,
    issue_token_for,
    open_surface_guard,
    optional_user_dependency,
    require_role,
    revoke_presented_token,
    set_auth_cookie,
    surface_of,
    token_from_request,
)
from kiln.core.auth.exposure import SIGNUP_CLOSED_MESSAGE, client_address, require_signup_open, signup_open
from kiln.core.auth.models import ROLE_RANK, ROLES, ApiToken, RevokedToken, User
from kiln.core.auth.passwords import (
    PasswordPolicyError,
    check_password_policy,
    hash_password,
    verify_and_rehash,
    verify_password,
)
from kiln.core.auth.ratelimit import LoginRateLimiter, RateLimitDecision
from kiln.core.auth.service import (
    LOGIN_REVOKED,
    LOGIN_USER_ID,
    UNSET,
    AuthServiceError,
    EmailAlreadyRegistered,
    InvalidRole,
    InvalidScope,
    LastSuperadmin,
    UsernameTaken,
    authenticate,
    change_password,
    create_api_token,
    create_user,
    get_user,
    get_user_by_email,
    get_user_by_username,
    is_revoked,
    list_api_tokens,
    list_users,
    lookup_api_token,
    normalize_email,
    normalize_scopes,
    purge_expired_revocations,
    resolve_api_token,
    revoke_api_token,
    revoke_token,
    set_active,
    set_role,
    update_profile,
)
from kiln.core.auth.tokens import (
    InvalidToken,
    IssuedToken,
    decode_access_token,
    generate_api_token,
    hash_api_token,
    issue_access_token,
)

__all__ = [
    "DEFAULT_COOKIE",
    "LOGIN_REVOKED",
    "LOGIN_USER_ID",
    "DeferredLogin",
    "authenticate_deferred",
    "ROLES",
    "ROLE_RANK",
    "SIGNUP_CLOSED_MESSAGE",
    "UNSET",
    "ApiToken",
    "AuthContext",
    "AuthError",
    "AuthServiceError",
    "CurrentAuth",
    "CurrentUser",
    "EmailAlreadyRegistered",
    "InvalidRole",
    "InvalidScope",
    "InvalidToken",
    "IssuedToken",
    "LastSuperadmin",
    "LoginLimiter",
    "LoginRateLimiter",
    "OpenSurfaceGuard",
    "OptionalUser",
    "PasswordPolicyError",
    "RateLimitDecision",
    "RevokedToken",
    "User",
    "UsernameTaken",
    "authenticate",
    "authenticate_connection",
    "authenticate_token",
    "change_password",
    "check_password_policy",
    "clear_auth_cookie",
    "client_address",
    "core_route_guard",
    "create_api_token",
    "create_user",
    "current_user_dependency",
    "decode_access_token",
    "generate_api_token",
    "get_auth_context",
    "get_current_user",
    "get_login_limiter",
    "get_optional_user",
    "get_user",
    "get_user_by_email",
    "get_user_by_username",
    "hash_api_token",
    "hash_password",
    "is_revoked",
    "issue_access_token",
    "issue_token_for",
    "list_api_tokens",
    "list_users",
    "lookup_api_token",
    "normalize_email",
    "normalize_scopes",
    "open_surface_guard",
    "optional_user_dependency",
    "purge_expired_revocations",
    "require_role",
    "require_signup_open",
    "resolve_api_token",
    "revoke_api_token",
    "revoke_presented_token",
    "revoke_token",
    "set_active",
    "set_auth_cookie",
    "set_role",
    "signup_open",
    "surface_of",
    "token_from_request",
    "update_profile",
    "verify_and_rehash",
    "verify_password",
]
