"""Generic registry of agents, tools (and legacy models): entities with versioned specs and shares.

Visibility is enforced on every read (§7.3-4 fixed): a superadmin sees everything; others see
their own entities, `public` ones, ones shared to them or to everyone, and `unlisted` ones by id
only. Anything else is 404, so ids do not leak. Only owners and superadmins write versions and
shares; plain users may not publish `public` entities.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.registry.models import GenaiEntityShare, GenaiRegistryEntity, GenaiRegistryVersion
from kiln.core.auth import User
from kiln.core.db import iso_or_none as _iso
from kiln.core.db import utcnow

ENTITY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,199}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
VISIBILITIES = ("private", "unlisted", "public")
GRANTEES = ("user", "group", "org", "public")
PERMISSIONS = ("view", "fork", "execute", "admin")
TYPES = {"agents": "agent", "tools": "tool", "models": "model", "agent": "agent", "tool": "tool", "model": "model"}
MAX_SPEC_BYTES = 64 * 1024


def entity_type_of(value: str) -> str:
    kind = TYPES.get(value.strip().lower())
    if kind is None:
        raise GenaiError(400, "invalid_entity_type", "entity type must be agents, tools or models")
    return kind


def entity_dto(entity: GenaiRegistryEntity, current: GenaiRegistryVersion | None) -> dict[str, Any]:
    return {
        "entity_id": entity.entity_id,
        "id": entity.entity_id,
        "entity_type": entity.entity_type,
        "owner_user_id": entity.owner_user_id,
        "visibility": entity.visibility,
        "status": entity.status,
        "current_version": current.version if current else None,
        "current_spec": current.spec if current else None,
        "published_at": _iso(current.published_at) if current else None,
        "created_at": _iso(entity.created_at),
        "updated_at": _iso(entity.updated_at),
    }


def version_dto(v: GenaiRegistryVersion) -> dict[str, Any]:
    return {
        "version_id": v.version_id,
        "entity_id": v.entity_id,
        "version": v.version,
        "spec": v.spec,
        "is_current": v.is_current,
        "published_at": _iso(v.published_at),
        "created_at": _iso(v.created_at),
    }


def share_dto(s: GenaiEntityShare) -> dict[str, Any]:
    return {
        "id": s.id,
        "entity_id": s.entity_id,
        "grantee_type": s.grantee_type,
        "grantee_id": s.grantee_id,
        "permission": s.permission,
        "shared_by_user_id": s.shared_by_user_id,
        "created_at": _iso(s.created_at),
    }


def _shared_to(user: User):
    return select(GenaiEntityShare.entity_id).where(
        or_(
            GenaiEntityShare.grantee_type == "public",
            (GenaiEntityShare.grantee_type == "user") & (GenaiEntityShare.grantee_id == user.id),
        )
    )


def listed_clause(user: User):
    if user.role == "superadmin":
        return None
    return or_(
        GenaiRegistryEntity.owner_user_id == user.id,
        GenaiRegistryEntity.visibility == "public",
        GenaiRegistryEntity.entity_id.in_(_shared_to(user)),
    )


async def readable(session: AsyncSession, user: User, entity: GenaiRegistryEntity) -> bool:
    if user.role == "superadmin" or entity.owner_user_id == user.id:
        return True
    if entity.visibility in ("public", "unlisted"):
        return True
    return bool(
        await session.scalar(
            select(func.count())
            .select_from(GenaiEntityShare)
            .where(GenaiEntityShare.entity_id == entity.entity_id, GenaiEntityShare.entity_id.in_(_shared_to(user)))
        )
    )


def can_manage(user: User, entity: GenaiRegistryEntity) -> bool:
    return user.role == "superadmin" or (entity.owner_user_id is not None and entity.owner_user_id == user.id)


async def current_version(session: AsyncSession, entity_id: str) -> GenaiRegistryVersion | None:
    return await session.scalar(
        select(GenaiRegistryVersion).where(
            GenaiRegistryVersion.entity_id == entity_id, GenaiRegistryVersion.is_current.is_(True)
        )
    )


def with_current(kind: str):
    """Entities of `kind` with their current version (None when they have none), at most 1000."""
    return (
        select(GenaiRegistryEntity, GenaiRegistryVersion)
        .outerjoin(
            GenaiRegistryVersion,
            (GenaiRegistryVersion.entity_id == GenaiRegistryEntity.entity_id)
            & GenaiRegistryVersion.is_current.is_(True),
        )
        .where(GenaiRegistryEntity.entity_type == kind)
        .limit(1000)
    )


async def list_entities(session: AsyncSession, user: User, kind: str) -> list[dict[str, Any]]:
    query = with_current(kind).order_by(GenaiRegistryEntity.updated_at.desc(), GenaiRegistryEntity.entity_id)
    clause = listed_clause(user)
    if clause is not None:
        query = query.where(clause)
    return [entity_dto(e, v) for e, v in await session.execute(query)]


async def get_entity(session: AsyncSession, user: User, kind: str, entity_id: str) -> GenaiRegistryEntity:
    entity = await session.get(GenaiRegistryEntity, entity_id) if len(entity_id) <= 200 else None
    if entity is None or entity.entity_type != kind or not await readable(session, user, entity):
        raise GenaiError(404, "entity_not_found", "Entity not found")
    return entity


def _check_spec(spec: Any) -> dict[str, Any]:
    import json

    if spec is None:
        return {}
    if not isinstance(spec, dict) or len(json.dumps(spec, default=str)) > MAX_SPEC_BYTES:
        raise GenaiError(400, "invalid_spec", "spec must be an object of at most 64 kB")
    return spec


async def add_version(
    session: AsyncSession,
    entity: GenaiRegistryEntity,
    version: str,
    spec: dict[str, Any],
    publish: bool,
    user_id: str | None,
) -> GenaiRegistryVersion:
    if not VERSION.match(version):
        raise GenaiError(400, "invalid_version", "version: letters, digits, '.', '_' and '-' (max 32)")
    exists = await session.scalar(
        select(func.count()).where(
            GenaiRegistryVersion.entity_id == entity.entity_id, GenaiRegistryVersion.version == version
        )
    )
    if exists:
        raise GenaiError(409, "duplicate_version", f"Version {version} exists")
    await session.execute(
        update(GenaiRegistryVersion).where(GenaiRegistryVersion.entity_id == entity.entity_id).values(is_current=False)
    )
    now = utcnow()
    row = GenaiRegistryVersion(
        entity_id=entity.entity_id,
        version=version,
        spec=spec,
        is_current=True,
        published_at=now if publish else None,
        created_by_user_id=user_id,
        created_at=now,
    )
    session.add(row)
    entity.status = "published" if publish else "draft"
    entity.updated_at = now
    await session.flush()
    return row


async def next_version(session: AsyncSession, entity_id: str) -> str:
    count = await session.scalar(select(func.count()).where(GenaiRegistryVersion.entity_id == entity_id))
    return f"v{int(count or 0) + 1}"


async def create_entity(
    session: AsyncSession, user: User, kind: str, body: dict[str, Any], *, owner_id: str | None = None
) -> tuple[GenaiRegistryEntity, GenaiRegistryVersion]:
    entity_id = str(body.get("id") or "").strip()
    if not ENTITY_ID.match(entity_id):
        raise GenaiError(400, "invalid_entity_id", "id: lower-case letters, digits, '.', '_' and '-' (max 200)")
    visibility = str(body.get("visibility") or "private").lower()
    if visibility not in VISIBILITIES:
        raise GenaiError(400, "invalid_visibility", "visibility must be private, unlisted or public")
    if visibility == "public" and not user.has_role("admin"):
        raise GenaiError(403, "insufficient_role", "Only admins can publish public entities")
    if await session.get(GenaiRegistryEntity, entity_id) is not None:
        raise GenaiError(409, "duplicate_entity", "Entity already exists")
    entity = GenaiRegistryEntity(
        entity_id=entity_id,
        entity_type=kind,
        visibility=visibility,
        owner_user_id=owner_id if owner_id is not None else user.id,
        status="draft",
    )
    session.add(entity)
    await session.flush()
    version = await add_version(
        session,
        entity,
        str(body.get("version") or "v1"),
        _check_spec(body.get("spec")),
        bool(body.get("publish", False)),
        user.id,
    )
    return entity, version


async def create_version(
    session: AsyncSession, user: User, entity: GenaiRegistryEntity, body: dict[str, Any]
) -> GenaiRegistryVersion:
    if not can_manage(user, entity):
        raise GenaiError(403, "insufficient_role", "Only owner or superadmin can create versions")
    version = str(body.get("version") or "").strip()
    if not version:
        raise GenaiError(400, "invalid_version", "version is required")
    return await add_version(
        session, entity, version, _check_spec(body.get("spec")), bool(body.get("publish")), user.id
    )


async def versions(session: AsyncSession, entity_id: str) -> list[GenaiRegistryVersion]:
    return list(
        (
            await session.execute(
                select(GenaiRegistryVersion)
                .where(GenaiRegistryVersion.entity_id == entity_id)
                .order_by(GenaiRegistryVersion.created_at)
            )
        ).scalars()
    )


async def share(
    session: AsyncSession, user: User, entity: GenaiRegistryEntity, body: dict[str, Any]
) -> GenaiEntityShare:
    if not can_manage(user, entity):
        raise GenaiError(403, "policy_denied", "Only entity owner or superadmin can share this entity")
    grantee_type = str(body.get("grantee_type") or "").lower()
    permission = str(body.get("permission") or "view").lower()
    grantee_id = None if body.get("grantee_id") is None else str(body["grantee_id"])[:64]
    if grantee_type not in GRANTEES or permission not in PERMISSIONS:
        raise GenaiError(400, "invalid_share", f"grantee_type in {GRANTEES}, permission in {PERMISSIONS}")
    if grantee_type != "public" and not grantee_id:
        raise GenaiError(400, "invalid_share", "grantee_id is required unless grantee_type is public")
    if grantee_type == "public":
        grantee_id = None
    existing = await session.scalar(
        select(GenaiEntityShare).where(
            GenaiEntityShare.entity_id == entity.entity_id,
            GenaiEntityShare.grantee_type == grantee_type,
            GenaiEntityShare.grantee_id.is_(None) if grantee_id is None else GenaiEntityShare.grantee_id == grantee_id,
            GenaiEntityShare.permission == permission,
        )
    )
    if existing is not None:
        return existing
    row = GenaiEntityShare(
        entity_id=entity.entity_id,
        grantee_type=grantee_type,
        grantee_id=grantee_id,
        permission=permission,
        shared_by_user_id=user.id,
    )
    session.add(row)
    await session.flush()
    return row


async def shares(session: AsyncSession, entity_id: str) -> list[GenaiEntityShare]:
    return list(
        (
            await session.execute(
                select(GenaiEntityShare)
                .where(GenaiEntityShare.entity_id == entity_id)
                .order_by(GenaiEntityShare.created_at)
            )
        ).scalars()
    )


def new_slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] or "item"
    import secrets

    return f"{slug}_{secrets.token_hex(3)}"
