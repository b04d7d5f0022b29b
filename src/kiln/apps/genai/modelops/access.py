"""Who sees and manages which model (§2.3 `can_manage_model`, visibility, offline filtering).

superadmin: everything. admin: reads, tests, validates, activates and deactivates models it can
see. user: its own models for every action, and reads of visible ones. Visible to non-superadmins:
their own models, `platform` models, and models shared to their role (`/v1/modelops/sharing`).
A model a caller may not see is 404, never 403, so ids do not leak.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.models import GenaiModel, GenaiModelScope
from kiln.core.auth import User

READ = "read"
ADMIN_ACTIONS = {READ, "test", "validate", "activate", "deactivate"}
OWNER_ACTIONS = {READ, "activate", "deactivate", "delete", "unregister", "register", "update", "test"}


async def shared_model_ids(session: AsyncSession, user: User) -> set[str]:
    roles = {"user": ["user"], "admin": ["user", "admin"], "superadmin": ["user", "admin", "superadmin"]}[user.role]
    rows = await session.execute(select(GenaiModelScope.model_ids).where(GenaiModelScope.scope.in_(roles)))
    return {str(mid) for ids in rows.scalars() for mid in (ids or [])}


async def visibility_clause(session: AsyncSession, user: User):
    if user.role == "superadmin":
        return None
    shared = await shared_model_ids(session, user)
    clauses = [GenaiModel.owner_user_id == user.id, GenaiModel.visibility_scope == "platform"]
    if shared:
        clauses.append(GenaiModel.model_id.in_(shared))
    return or_(*clauses)


async def model_for(session: AsyncSession, user: User, model_id: str, action: str = READ) -> GenaiModel:
    model = await session.get(GenaiModel, model_id) if 0 < len(model_id) <= 200 else None
    if model is None:
        raise GenaiError(404, "not_found", "Model not found")
    if user.role == "superadmin":
        return model
    own = model.owner_user_id == user.id
    visible = own or model.visibility_scope == "platform" or model.model_id in await shared_model_ids(session, user)
    if not visible:
        raise GenaiError(404, "not_found", "Model not found")
    if own and action in OWNER_ACTIONS:
        return model
    if user.role == "admin" and action in ADMIN_ACTIONS:
        return model
    if action == READ:
        return model
    if user.role == "admin":
        raise GenaiError(403, "forbidden", "Admins cannot perform this model lifecycle action")
    raise GenaiError(403, "forbidden", "You do not have access to this model action")
