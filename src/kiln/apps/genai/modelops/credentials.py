"""Saved provider credentials: AES-GCM encrypted at rest with `KILN_CREDENTIALS_KEY` (separate from
the JWT secret; generated into KILN_HOME when unset). Listings never carry the key, only its last 4."""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import credentials_key
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.models import GenaiCredential, GenaiModel
from kiln.core.auth import User
from kiln.core.db import new_id, utcnow


def encrypt(kernel: Any, credential_id: str, secret: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(credentials_key(kernel)).encrypt(nonce, secret.encode(), credential_id.encode())
    return base64.b64encode(nonce + sealed).decode()


def decrypt(kernel: Any, credential_id: str, blob: str) -> str:
    raw = base64.b64decode(blob)
    try:
        return AESGCM(credentials_key(kernel)).decrypt(raw[:12], raw[12:], credential_id.encode()).decode()
    except InvalidTag:
        raise GenaiError(
            409,
            "credential_unreadable",
            "Saved credential cannot be decrypted (KILN_CREDENTIALS_KEY changed?); save it again",
        ) from None


def credential_dto(row: GenaiCredential) -> dict[str, Any]:
    return {
        "id": row.id,
        "owner_user_id": row.owner_user_id,
        "credential_scope": row.credential_scope,
        "provider": row.provider_slug,
        "display_name": row.display_name,
        "api_base_url": row.api_base_url,
        "api_key_last4": row.api_key_last4,
        "is_active": row.is_active,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "created_at": row.created_at.isoformat() if row.created_at else None,
    }


async def decrypt_credential(session: AsyncSession, kernel: Any, credential_id: str, *, secret: str = "api_key") -> str:
    row = await session.get(GenaiCredential, credential_id)
    if row is None or not row.is_active or row.revoked_at is not None:
        raise GenaiError(
            409,
            "credential_unavailable",
            f"secret_refs.{secret}: credential is missing or revoked",
            {"credential_id": credential_id},
        )
    return decrypt(kernel, row.id, row.api_key_encrypted)


def visible(user: User):
    """Own credentials, plus platform ones for superadmins."""
    if user.role == "superadmin":
        return or_(GenaiCredential.owner_user_id == user.id, GenaiCredential.credential_scope == "platform")
    return GenaiCredential.owner_user_id == user.id


async def list_credentials(session: AsyncSession, user: User) -> list[GenaiCredential]:
    rows = await session.execute(select(GenaiCredential).where(visible(user)).order_by(GenaiCredential.created_at))
    return list(rows.scalars())


async def get_credential(session: AsyncSession, user: User, credential_id: str) -> GenaiCredential:
    row = await session.get(GenaiCredential, credential_id) if len(credential_id) <= 64 else None
    if row is None or not (
        row.owner_user_id == user.id or (user.role == "superadmin" and row.credential_scope == "platform")
    ):
        raise GenaiError(404, "credential_not_found", "Credential not found")
    return row


async def create_credential(
    session: AsyncSession,
    kernel: Any,
    user: User,
    *,
    provider: str,
    display_name: str,
    api_key: str,
    api_base_url: str | None,
    scope: str,
) -> GenaiCredential:
    if scope not in ("personal", "platform"):
        raise GenaiError(400, "invalid_credential_scope", "credential_scope must be personal or platform")
    if scope == "platform" and user.role != "superadmin":
        raise GenaiError(403, "insufficient_role", "Only superadmin can create platform credentials")
    if not api_key.strip():
        raise GenaiError(400, "invalid_api_key", "api_key is required")
    if api_base_url and not api_base_url.startswith(("http://", "https://")):
        raise GenaiError(400, "invalid_api_base_url", "api_base_url must be an http(s) URL")
    cid = new_id()
    row = GenaiCredential(
        id=cid,
        owner_user_id=user.id,
        credential_scope=scope,
        provider_slug=provider.strip() or "openai_compatible",
        display_name=display_name.strip() or provider,
        api_base_url=api_base_url or None,
        api_key_encrypted=encrypt(kernel, cid, api_key.strip()),
        api_key_last4=api_key.strip()[-4:],
    )
    session.add(row)
    await session.flush()
    return row


async def revoke_credential(session: AsyncSession, row: GenaiCredential) -> GenaiCredential:
    """Revoked credentials stop resolving; models using them lose their current validation."""
    if row.revoked_at is None:
        row.is_active = False
        row.revoked_at = utcnow()
        await session.execute(
            update(GenaiModel).where(GenaiModel.credential_id == row.id).values(is_validation_current=False)
        )
        await session.flush()
    return row
