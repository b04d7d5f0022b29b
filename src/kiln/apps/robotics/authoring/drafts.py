"""Draft heads and their revisions (inspection, draft, preview and the drafted spec).

Stored payloads are served back as stored: a revision written by another tool with a
reduced draft result still opens (the reference re-validated it and answered 500).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.common import iso
from kiln.apps.robotics.models import Draft, DraftRevision
from kiln.core.db import new_id, utcnow


def draft_revision_view(d: DraftRevision) -> dict[str, Any]:
    return {
        "id": d.id,
        "draft_id": d.draft_id,
        "revision_number": d.revision_number,
        "label": d.label,
        "status": d.status,
        "saved_config_id": d.saved_config_id,
        "source_asset_id": d.source_asset_id,
        "metadata": d.metadata_json or {},
        "inspection_request": d.inspection_request,
        "inspection": d.inspection,
        "draft_request": d.draft_request,
        "draft_result": d.draft_result,
        "preview_request": d.preview_request,
        "preview": d.preview,
        "spec_document_json": d.spec_document,
        "spec_document_version": d.spec_document_version,
        "invalid_reason": d.invalid_reason,
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
    }


async def create_draft(
    session: AsyncSession,
    *,
    asset_id: str,
    inspection_request: dict[str, Any],
    inspection: dict[str, Any],
    draft_request: dict[str, Any],
    draft_result: dict[str, Any],
    preview_request: dict[str, Any] | None,
    preview: dict[str, Any] | None,
    spec_document: dict[str, Any] | None,
) -> DraftRevision:
    """A new draft head with its first revision (status `draft`), committed."""
    now = utcnow()
    head = Draft(id=new_id(), source_asset_id=asset_id, status="draft", created_at=now, updated_at=now)
    rev = DraftRevision(
        id=new_id(),
        draft_id=head.id,
        revision_number=1,
        label="Draft 1",
        source_asset_id=asset_id,
        status="draft",
        metadata_json={},
        inspection_request=inspection_request,
        inspection=inspection,
        draft_request=draft_request,
        draft_result=draft_result,
        preview_request=preview_request,
        preview=preview,
        spec_document=spec_document,
        spec_document_version=(spec_document or {}).get("spec_version", 2),
        created_at=now,
        updated_at=now,
    )
    head.current_revision_id = rev.id
    session.add(head)
    await session.flush()
    session.add(rev)
    await session.commit()
    return rev


async def link_draft_to_config(session: AsyncSession, rev: DraftRevision, config_id: str) -> None:
    """Mark a draft revision and its head as saved into `config_id` (caller commits)."""
    now = utcnow()
    rev.status, rev.saved_config_id, rev.updated_at = "saved", config_id, now
    head = await session.get(Draft, rev.draft_id)
    if head is not None:
        head.status, head.saved_config_id, head.updated_at = "saved", config_id, now
        head.confirmed_revision_id = rev.id
