"""Identity on the core user store: registration rules, activation, roles, the user shape."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.core import auth as core_auth
from kiln.core.auth import ROLES, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def user_dto(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "username": user.username or user.email.split("@")[0],
        "role": user.role,
        "is_active": bool(user.is_active),
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "updated_at": user.updated_at.isoformat() if user.updated_at else None,
    }


def _registration_role(
    actor: User | None, requested: str, requested_active: bool | None, signup_open: bool
) -> tuple[str, bool]:
    if actor is None:
        if not signup_open:
            raise GenaiError(
                403, "self_registration_disabled", "Self registration is disabled; ask an administrator for an account"
            )
        if requested and requested != "user":
            raise GenaiError(403, "role_assignment_forbidden", "Only superadmin can set custom role")
        return "user", False
    if actor.role == "superadmin":
        if requested and requested not in ROLES:
            raise GenaiError(400, "invalid_role", f"Invalid role value; choose one of {', '.join(ROLES)}")
        role = requested or "user"
        active = role in {"admin", "superadmin"} if requested_active is None else requested_active
        return role, active
    if actor.role == "admin":
        if requested and requested != "user":
            raise GenaiError(403, "role_assignment_forbidden", "Admin can only create user role")
        return "user", False
    raise GenaiError(403, "insufficient_role", "Only admin or superadmin can create users")


async def register(
    session: AsyncSession,
    *,
    actor: User | None,
    email: str,
    username: str,
    password: str,
    role: str | None,
    is_active: bool | None,
    signup_open: bool,
) -> User:
    email = email.strip().lower()
    username = username.strip().lower()
    if not EMAIL.match(email):
        raise GenaiError(400, "invalid_email", "A valid email is required")
    if not username:
        raise GenaiError(400, "invalid_username", "Username is required")
    if not USERNAME.match(username) or "@" in username:
        raise GenaiError(
            400, "invalid_username", "Username may hold lower-case letters, digits, '.', '_' and '-' (at most 64)"
        )
    if not password:
        raise GenaiError(400, "invalid_password", "Password is required")
    chosen_role, active = _registration_role(actor, (role or "").strip().lower(), is_active, signup_open)
    try:
        core_auth.check_password_policy(password, email=email)
    except core_auth.PasswordPolicyError as exc:
        raise GenaiError(422, "weak_password", str(exc)) from None
    try:
        return await core_auth.create_user(
            session, email, password, role=chosen_role, username=username, is_active=active
        )
    except (core_auth.EmailAlreadyRegistered, core_auth.UsernameTaken):
        raise GenaiError(409, "duplicate_user", "Email or username already exists") from None


async def target_user(session: AsyncSession, user_id: str) -> User:
    user = await core_auth.get_user(session, user_id) if len(user_id) <= 64 else None
    if user is None:
        raise GenaiError(404, "user_not_found", "User not found")
    return user


async def activate(session: AsyncSession, actor: User, user_id: str, active: bool = True) -> User:
    user = await target_user(session, user_id)
    if actor.role != "superadmin" and user.role != "user":
        raise GenaiError(403, "insufficient_role", "Admin cannot change the activation of elevated roles")
    try:
        return await core_auth.set_active(session, user, active)
    except core_auth.LastSuperadmin:
        raise GenaiError(
            409, "last_superadmin_deactivate_forbidden", "Cannot deactivate the last remaining superadmin"
        ) from None


async def change_role(session: AsyncSession, user_id: str, role: str) -> User:
    role = role.strip().lower()
    if role not in ROLES:
        raise GenaiError(400, "invalid_role", f"Invalid role value; choose one of {', '.join(ROLES)}")
    user = await target_user(session, user_id)
    try:
        return await core_auth.set_role(session, user, role)
    except core_auth.LastSuperadmin:
        raise GenaiError(
            409, "last_superadmin_demote_forbidden", "Cannot demote the last remaining superadmin"
        ) from None


async def users(session: AsyncSession, status: str | None) -> list[User]:
    active = {"pending": False, "active": True}.get(status) if status else None
    rows, _ = await core_auth.list_users(session, is_active=active, limit=10_000)
    return rows


async def ensure_bootstrap_superadmin(session: AsyncSession, email: str | None, password: str | None) -> bool:
    """Create the configured superadmin when there is no superadmin yet; True when created."""
    if not email or not password:
        return False
    existing, total = await core_auth.list_users(session, role="superadmin", limit=1)
    if total:
        return False
    user = await core_auth.get_user_by_email(session, email)
    if user is not None:
        user.role = "superadmin"
        user.is_active = True
        await session.flush()
        return True
    await core_auth.create_user(
        session, email, password, role="superadmin", username=email.split("@")[0].lower()[:64], is_active=True
    )
    return True
