"""User store operations, as plain async functions on an AsyncSession.

Functions that write only add and flush: the caller owns the transaction and commits, so a
surface can write its own rows in the same transaction. Password hashing runs in a thread
because argon2 is deliberately slow and would otherwise stall the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.core.auth.models import ROLES, ApiToken, RevokedToken, User
from kiln.core.auth.passwords import burn_verify_time, check_password_policy, hash_password, verify_and_rehash
from kiln.core.auth.tokens import generate_api_token, hash_api_token, looks_like_api_token
from kiln.core.db import utcnow
from kiln.core.jobs import periodic
from kiln.settings import ALL_APPS

# last_used_at of an API token is written at most this often, not on every request.
API_TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


class AuthServiceError(Exception):
    """Base of the user store's errors; the message says what to fix."""


class EmailAlreadyRegistered(AuthServiceError):
    def __init__(self, email: str):
        super().__init__("Email already registered; log in or use another address")
        self.email = email


class UsernameTaken(AuthServiceError):
    def __init__(self, username: str):
        super().__init__("Username already taken; choose another")
        self.username = username


class InvalidRole(AuthServiceError):
    def __init__(self, role: str):
        super().__init__(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}")


class LastSuperadmin(AuthServiceError):
    def __init__(self) -> None:
        super().__init__("Cannot remove the last active superadmin; promote another user first")


class InvalidScope(AuthServiceError):
    def __init__(self, message: str):
        super().__init__(message)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an argument that was not given, so None can mean 'clear this field'."""


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRole(role)


async def create_user(
    session: AsyncSession,
    email: str,
    password: str,
    *,
    role: str = "user",
    full_name: str | None = None,
    language: str | None = None,
    username: str | None = None,
    is_active: bool = True,
    enforce_policy: bool = True,
) -> User:
    """Add a user (flushed, not committed). Raises EmailAlreadyRegistered, UsernameTaken,
    InvalidRole or PasswordPolicyError."""
    _check_role(role)
    email = normalize_email(email)
    username = username.strip().lower() if username else None
    if enforce_policy:
        check_password_policy(password, email=email)
    if await get_user_by_email(session, email) is not None:
        raise EmailAlreadyRegistered(email)
    if username and await get_user_by_username(session, username) is not None:
        raise UsernameTaken(username)
    user = User(
        email=email,
        username=username,
        password_hash=await asyncio.to_thread(hash_password, password),
        full_name=full_name,
        language=language or "en",
        role=role,
        is_active=is_active,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Lost a race with a concurrent sign-up of the same address; the transaction is unusable now.
        await session.rollback()
        raise EmailAlreadyRegistered(email) from exc
    return user


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == normalize_email(email)))
    return result.scalar_one_or_none()


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    result = await session.execute(select(User).where(User.username == username.strip().lower()))
    return result.scalar_one_or_none()


async def authenticate(session: AsyncSession, identifier: str, password: str) -> User | None:
    """Return the user whose email (or username) and password match, else None.

    Inactive users are returned too, so the caller can answer "account inactive" rather than
    "wrong password"; check `user.is_active`. On success last_login_at is set and an outdated
    hash is upgraded (flushed; the caller commits).
    """
    if "@" in identifier:
        user = await get_user_by_email(session, identifier)
    else:
        user = await get_user_by_username(session, identifier)
    if user is None:
        await asyncio.to_thread(burn_verify_time, password)
        return None
    ok, new_hash = await asyncio.to_thread(verify_and_rehash, password, user.password_hash)
    if not ok:
        return None
    if new_hash:
        user.password_hash = new_hash
    user.last_login_at = utcnow()
    await session.flush()
    return user


async def list_users(
    session: AsyncSession,
    *,
    role: str | None = None,
    is_active: bool | None = None,
    search: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[User], int]:
    """Users oldest first, with the total matching count for pagination."""
    query = select(User)
    if role is not None:
        query = query.where(User.role == role)
    if is_active is not None:
        query = query.where(User.is_active == is_active)
    if search:
        term = search.strip().lower()  # autoescape: a "%" or "_" typed by a user matches literally
        name = func.lower(func.coalesce(User.full_name, ""))
        query = query.where(User.email.contains(term, autoescape=True) | name.contains(term, autoescape=True))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(query.order_by(User.created_at, User.id).limit(limit).offset(offset))
    return list(rows.scalars()), int(total or 0)


async def _active_superadmins(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(User).where(User.role == "superadmin", User.is_active.is_(True))
    )
    return int(count or 0)


async def set_role(session: AsyncSession, user: User, role: str) -> User:
    """Change a user's role; refuses to demote the last active superadmin (LastSuperadmin)."""
    _check_role(role)
    demoting = user.role == "superadmin" and role != "superadmin" and user.is_active
    if demoting and await _active_superadmins(session) <= 1:
        raise LastSuperadmin()
    user.role = role
    await session.flush()
    return user


async def set_active(session: AsyncSession, user: User, active: bool) -> User:
    """Activate or deactivate; deactivating the last active superadmin is refused (LastSuperadmin)."""
    disabling = not active and user.is_active and user.role == "superadmin"
    if disabling and await _active_superadmins(session) <= 1:
        raise LastSuperadmin()
    user.is_active = active
    await session.flush()
    return user


async def update_profile(
    session: AsyncSession, user: User, *, full_name: str | None = UNSET, language: str | None = UNSET
) -> User:
    """Change only the fields that are passed; None clears full_name and resets language to "en"."""
    if full_name is not UNSET:
        user.full_name = full_name
    if language is not UNSET:
        user.language = language or "en"
    await session.flush()
    return user


async def change_password(session: AsyncSession, user: User, new_password: str) -> User:
    """Set a new password after the policy check (PasswordPolicyError)."""
    check_password_policy(new_password, email=user.email)
    user.password_hash = await asyncio.to_thread(hash_password, new_password)
    await session.flush()
    return user


# --- revocation of login JWTs -------------------------------------------------------------


async def revoke_token(session: AsyncSession, jti: str, user_id: str, expires_at: datetime) -> None:
    """Record `jti` as revoked until `expires_at`. Revoking twice is harmless."""
    # ON CONFLICT DO NOTHING: a concurrent double logout must not spoil the caller's transaction.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(RevokedToken)
        .values(jti=jti, user_id=user_id, expires_at=expires_at, revoked_at=utcnow())
        .on_conflict_do_nothing(index_elements=["jti"])
    )


async def is_revoked(session: AsyncSession, jti: str) -> bool:
    result = await session.execute(select(RevokedToken.jti).where(RevokedToken.jti == jti))
    return result.first() is not None


LOGIN_USER_ID = bindparam("login_user_id")
"""The login JWT's user id (`sub`) in a statement that checks the login (see `login_params`)."""
LOGIN_REVOKED = select(RevokedToken.jti).where(RevokedToken.jti == bindparam("login_jti")).exists()
"""A column: whether the login JWT's id (`jti`) is revoked (bound by `login_params`)."""


def login_params(user_id: str, jti: str) -> dict[str, str]:
    return {"login_user_id": user_id, "login_jti": jti}


# Built once: constructing the statement cost more CPU than SQLAlchemy's cached compile of it.
_USER_UNLESS_REVOKED = select(User, LOGIN_REVOKED).where(User.id == LOGIN_USER_ID)


async def user_unless_revoked(session: AsyncSession, user_id: str, jti: str) -> tuple[User | None, bool]:
    """(the user, whether `jti` is revoked) for a login JWT, in one query while the user exists."""
    row = (await session.execute(_USER_UNLESS_REVOKED, login_params(user_id, jti))).first()
    if row is None:
        return None, await is_revoked(session, jti)
    return row[0], bool(row[1])


async def purge_expired_revocations(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete revocations of tokens that have expired anyway; returns how many. Caller commits."""
    result = await session.execute(delete(RevokedToken).where(RevokedToken.expires_at < (now or utcnow())))
    return int(result.rowcount or 0)


@periodic("auth.purge_revocations", every=3600)
async def purge_revocations_task(kernel: Any) -> None:
    """Periodic clean-up, run by `serve` or one worker: revoked ids of expired tokens are dead weight."""
    async with kernel.db.session() as session:
        await purge_expired_revocations(session)
        await session.commit()


# --- API tokens ---------------------------------------------------------------------------


def normalize_scopes(scopes: Iterable[str] | None) -> str | None:
    """The stored form of a token's surfaces: None (every surface) or `a,b` of known surface names."""
    if scopes is None:
        return None
    names = sorted({name.strip().lower() for name in scopes if name.strip()})
    if not names:
        raise InvalidScope(f"Name at least one surface to scope a token to: {', '.join(ALL_APPS)}")
    unknown = [name for name in names if name not in ALL_APPS]
    if unknown:
        raise InvalidScope(f"Unknown surface {', '.join(unknown)}; choose from {', '.join(ALL_APPS)}")
    return ",".join(names)


async def create_api_token(
    session: AsyncSession,
    user: User,
    name: str,
    expires_at: datetime | None = None,
    *,
    scopes: Iterable[str] | None = None,
) -> tuple[ApiToken, str]:
    """Add an API token for `user`; return it with the plaintext, which is never stored or shown again.

    `scopes` limits it to those surfaces (InvalidScope for an unknown name); None opens every surface.
    """
    stored_scopes = normalize_scopes(scopes)
    plaintext, token_hash, prefix = generate_api_token()
    token = ApiToken(
        user_id=user.id, name=name, token_hash=token_hash, prefix=prefix, expires_at=expires_at, scopes=stored_scopes
    )
    session.add(token)
    await session.flush()
    return token, plaintext


async def list_api_tokens(session: AsyncSession, user: User, *, include_revoked: bool = False) -> list[ApiToken]:
    query = select(ApiToken).where(ApiToken.user_id == user.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    rows = await session.execute(query.order_by(ApiToken.created_at, ApiToken.id))
    return list(rows.scalars())


async def revoke_api_token(session: AsyncSession, user: User, token_id: str) -> bool:
    """Revoke one of `user`'s API tokens; False when it is not theirs or does not exist."""
    token = await session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return False
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await session.flush()
    return True


async def resolve_api_token(session: AsyncSession, plaintext: str, *, now: datetime | None = None) -> User | None:
    """The active owner of a live (not revoked, not expired) API token, else None.

    Touches last_used_at (at most once a minute; flushed, the caller commits).
    """
    found = await lookup_api_token(session, plaintext, now=now)
    return found[1] if found is not None else None


_API_TOKEN_WITH_OWNER = (
    select(ApiToken, User).join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == bindparam("token_hash"))
)


async def lookup_api_token(
    session: AsyncSession, plaintext: str, *, now: datetime | None = None
) -> tuple[ApiToken, User] | None:
    """(token, active owner) of a live API token, else None; touches last_used_at like resolve_api_token."""
    if not looks_like_api_token(plaintext):
        return None
    now = now or utcnow()
    row = (await session.execute(_API_TOKEN_WITH_OWNER, {"token_hash": hash_api_token(plaintext)})).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= API_TOKEN_TOUCH_INTERVAL:
        token.last_used_at = now
        await session.flush()
    return token, user
