"""Saved conversion configs: create, update and duplicate with immutable revisions; migrate on load.

Reading a config never touches `updated_at` or `last_opened_at` (the reference bumped both
on every GET, reordering lists); the only write a read may cause is the one-time upgrade
of an old spec document, recorded as a `migration` revision with its note.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.authoring.drafts import draft_revision_view, link_draft_to_config
from kiln.apps.robotics.common import NotFound, RoboticsError, iso, normalize_name, spec_refusal
from kiln.apps.robotics.models import ConfigRevision, ConversionConfig, DraftRevision
from kiln.apps.robotics.spec.migrate import SpecError, load_spec_document
from kiln.apps.robotics.spec.models import SPEC_VERSION, SpecDocument
from kiln.core.db import new_id, utcnow


def parse_document(payload: Any) -> tuple[SpecDocument, list[str]]:
    try:
        return load_spec_document(payload)
    except SpecError as exc:
        raise spec_refusal(exc) from None


def _facts(doc: dict[str, Any]) -> dict[str, Any]:
    """Summary fields read from a stored document without validating it."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    schema = spec.get("schema") or spec.get("schema_spec") or {}
    rs = spec.get("row_strategy") or spec.get("assembly") or {}
    out = spec.get("output") or {}
    return {
        "spec_schema_name": schema.get("name"),
        "spec_schema_version": schema.get("version"),
        "spec_row_strategy_kind": rs.get("kind") if isinstance(rs, dict) else None,
        "spec_output_format": out.get("format", "tfrecord") if isinstance(out, dict) else None,
        "spec_output_compression": out.get("compression", "none") if isinstance(out, dict) else None,
        "spec_feature_count": len(spec.get("features") or {}),
    }


def _resolved(doc: dict[str, Any]) -> SpecDocument | None:
    try:
        return load_spec_document(doc)[0]
    except SpecError:
        return None


async def find_config(session: AsyncSession, ref: str) -> ConversionConfig:
    ref = ref.strip()
    cfg = await session.scalar(
        select(ConversionConfig)
        .where(or_(ConversionConfig.id == ref, ConversionConfig.normalized_name == normalize_name(ref)))
        .limit(1)
    )
    if cfg is None:
        raise NotFound(f"saved conversion config not found: {ref}")
    return cfg


async def _add_revision(session: AsyncSession, cfg: ConversionConfig, kind: str, summary: str | None) -> None:
    last = await session.scalar(
        select(func.max(ConfigRevision.revision_number)).where(ConfigRevision.config_id == cfg.id)
    )
    session.add(
        ConfigRevision(
            id=new_id(),
            config_id=cfg.id,
            revision_number=(last or 0) + 1,
            change_kind=kind,
            change_summary=summary,
            metadata_json=dict(cfg.metadata_json or {}),
            spec_document=cfg.spec_document,
            spec_document_version=cfg.spec_document_version,
            invalid_reason=cfg.invalid_reason,
            created_at=utcnow(),
        )
    )


async def _commit_named(session: AsyncSession, name: str) -> None:
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise RoboticsError(f"saved conversion config already exists: {name}") from None


async def _name_free(session: AsyncSession, name: str, except_id: str | None = None) -> None:
    q = select(ConversionConfig.id).where(ConversionConfig.normalized_name == normalize_name(name))
    found = await session.scalar(q)
    if found is not None and found != except_id:
        raise RoboticsError(f"saved conversion config already exists: {name.strip()}")


async def create_config(
    session: AsyncSession,
    name: str,
    description: str | None,
    metadata: dict[str, Any],
    spec: dict[str, Any] | None,
    draft_revision_id: str | None = None,
) -> ConversionConfig:
    name = " ".join(name.split())
    await _name_free(session, name)
    draft_rev = None
    if draft_revision_id is not None:
        draft_rev = await session.get(DraftRevision, draft_revision_id)
        if draft_rev is None:
            raise NotFound(f"draft revision not found: {draft_revision_id}")
        if draft_rev.status == "discarded":
            raise RoboticsError(f"draft revision is discarded and cannot be saved: {draft_revision_id}")
        spec = spec if spec is not None else draft_rev.spec_document
        if spec is None:
            raise RoboticsError(f"draft revision has no spec document to save: {draft_revision_id}")
    doc, _notes = parse_document(spec)
    body = doc.to_dict()
    if draft_rev is not None:
        body["metadata"] = {
            **body.get("metadata", {}),
            "draft_promotion": {
                "draft_id": draft_rev.draft_id,
                "draft_revision_id": draft_rev.id,
                "source_asset_id": draft_rev.source_asset_id,
            },
        }
    now = utcnow()
    cfg = ConversionConfig(
        id=new_id(),
        name=name,
        normalized_name=normalize_name(name),
        description=description or None,
        metadata_json=metadata or {},
        spec_document=body,
        spec_document_version=doc.spec_version,
        created_at=now,
        updated_at=now,
    )
    session.add(cfg)
    await session.flush()
    await _add_revision(session, cfg, "create", description or "created")
    if draft_rev is not None:
        await link_draft_to_config(session, draft_rev, cfg.id)
    await _commit_named(session, name)
    return cfg


async def update_config(session: AsyncSession, ref: str, changes: dict[str, Any]) -> ConversionConfig:
    if not changes:
        raise RoboticsError("update payload must include at least one field")
    cfg = await find_config(session, ref)
    said: list[str] = []
    if "name" in changes and changes["name"] is not None:
        name = " ".join(changes["name"].split())
        if name != cfg.name:
            await _name_free(session, name, cfg.id)
            said.append(f"renamed from {cfg.name!r} to {name!r}")
            cfg.name, cfg.normalized_name = name, normalize_name(name)
    if "description" in changes:
        cfg.description = changes["description"] or None
        said.append("updated description")
    if changes.get("metadata") is not None:
        cfg.metadata_json = changes["metadata"]
        said.append("updated metadata")
    if changes.get("spec") is not None:
        doc, _ = parse_document(changes["spec"])
        cfg.spec_document, cfg.spec_document_version, cfg.invalid_reason = doc.to_dict(), doc.spec_version, None
        said.append("updated spec")
    cfg.updated_at = utcnow()
    await _add_revision(session, cfg, "update", "; ".join(said) or "no changes")
    await _commit_named(session, cfg.name)
    return cfg


async def duplicate_config(
    session: AsyncSession, ref: str, name: str | None, description: str | None, metadata: dict[str, Any] | None
) -> ConversionConfig:
    src = await find_config(session, ref)
    await migrate_on_load(session, src)
    if name is None:
        base, n = f"Copy of {src.name}", 2
        name = base
        while await session.scalar(
            select(ConversionConfig.id).where(ConversionConfig.normalized_name == normalize_name(name))
        ):
            name, n = f"{base} ({n})", n + 1
    name = " ".join(name.split())
    await _name_free(session, name)
    revs = await session.scalar(
        select(func.max(ConfigRevision.revision_number)).where(ConfigRevision.config_id == src.id)
    )
    now = utcnow()
    cfg = ConversionConfig(
        id=new_id(),
        name=name,
        normalized_name=normalize_name(name),
        description=description if description is not None else src.description,
        metadata_json=metadata if metadata is not None else dict(src.metadata_json or {}),
        spec_document=src.spec_document,
        spec_document_version=src.spec_document_version,
        invalid_reason=src.invalid_reason,
        created_at=now,
        updated_at=now,
    )
    session.add(cfg)
    await session.flush()
    await _add_revision(session, cfg, "create", f"duplicated from {src.name!r} revision {revs or 1}")
    await _commit_named(session, name)
    return cfg


async def migrate_on_load(session: AsyncSession, cfg: ConversionConfig) -> None:
    """Upgrade an old stored document once (new `migration` revision); record why one cannot load."""
    stored = cfg.spec_document or {}
    version = stored.get("spec_version", SPEC_VERSION) if isinstance(stored, dict) else None
    try:
        doc, notes = load_spec_document(stored)
    except SpecError as exc:
        if cfg.invalid_reason != str(exc):
            cfg.invalid_reason = str(exc)
            await session.commit()
        return
    if isinstance(version, int) and version < SPEC_VERSION or cfg.spec_document_version < SPEC_VERSION:
        note = f"migrated saved config from spec document version {version} to {doc.spec_version}"
        extra = [n for n in notes if not n.startswith("migrated spec document")]
        cfg.spec_document, cfg.spec_document_version, cfg.invalid_reason = doc.to_dict(), doc.spec_version, None
        cfg.updated_at = utcnow()
        await _add_revision(session, cfg, "migration", "; ".join([note, *extra]))
        await session.commit()
    elif cfg.invalid_reason is not None:
        cfg.invalid_reason = None
        await session.commit()


async def _stats(session: AsyncSession, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        i: {"revision_count": 0, "notes": [], "draft_count": 0, "preview_at": None} for i in ids
    }
    if not ids:
        return out
    for cid, n in await session.execute(
        select(ConfigRevision.config_id, func.count())
        .where(ConfigRevision.config_id.in_(ids))
        .group_by(ConfigRevision.config_id)
    ):
        out[cid]["revision_count"] = int(n)
    for cid, summary in await session.execute(
        select(ConfigRevision.config_id, ConfigRevision.change_summary)
        .where(ConfigRevision.config_id.in_(ids), ConfigRevision.change_kind == "migration")
        .order_by(ConfigRevision.revision_number)
    ):
        if summary and summary not in out[cid]["notes"]:
            out[cid]["notes"].append(summary)
    for cid, n, latest in await session.execute(
        select(
            DraftRevision.saved_config_id,
            func.count(),
            func.max(DraftRevision.updated_at).filter(DraftRevision.preview.is_not(None)),
        )
        .where(DraftRevision.saved_config_id.in_(ids))
        .group_by(DraftRevision.saved_config_id)
    ):
        out[cid]["draft_count"], out[cid]["preview_at"] = int(n), latest
    return out


def _summary(cfg: ConversionConfig, st: dict[str, Any]) -> dict[str, Any]:
    doc = cfg.spec_document or {}
    stored_version = doc.get("spec_version", cfg.spec_document_version) if isinstance(doc, dict) else None
    status = (
        "invalid"
        if cfg.invalid_reason
        else "needs_migration"
        if (isinstance(stored_version, int) and stored_version < SPEC_VERSION)
        else "ready"
    )
    return {
        "id": cfg.id,
        "name": cfg.name,
        "description": cfg.description,
        "metadata": cfg.metadata_json or {},
        "spec_document_version": cfg.spec_document_version,
        **_facts(doc),
        "revision_count": st["revision_count"],
        "draft_count": st["draft_count"],
        "migration_notes": st["notes"],
        "invalid_reason": cfg.invalid_reason,
        "latest_preview_available": st["preview_at"] is not None,
        "latest_preview_updated_at": iso(st["preview_at"]),
        "created_at": iso(cfg.created_at),
        "updated_at": iso(cfg.updated_at),
        "last_opened_at": iso(cfg.last_opened_at),
        "status": status,
    }


async def list_configs(session: AsyncSession) -> list[dict[str, Any]]:
    cfgs = list(
        await session.scalars(
            select(ConversionConfig).order_by(ConversionConfig.updated_at.desc(), ConversionConfig.id.desc())
        )
    )
    st = await _stats(session, [c.id for c in cfgs])
    return [_summary(c, st[c.id]) for c in cfgs]


async def config_detail(session: AsyncSession, cfg: ConversionConfig) -> dict[str, Any]:
    st = (await _stats(session, [cfg.id]))[cfg.id]
    resolved = _resolved(cfg.spec_document)
    revisions = list(
        await session.scalars(
            select(ConfigRevision)
            .where(ConfigRevision.config_id == cfg.id)
            .order_by(ConfigRevision.revision_number.desc())
        )
    )
    drafts = list(
        await session.scalars(
            select(DraftRevision)
            .where(DraftRevision.saved_config_id == cfg.id)
            .order_by(DraftRevision.updated_at.desc(), DraftRevision.id.desc())
        )
    )
    latest = next((d for d in drafts if d.preview is not None), None)

    def rev_view(r: ConfigRevision) -> dict[str, Any]:
        doc = _resolved(r.spec_document)
        return {
            "id": r.id,
            "config_id": r.config_id,
            "revision_number": r.revision_number,
            "change_kind": r.change_kind,
            "change_summary": r.change_summary,
            "spec_document_version": r.spec_document_version,
            "spec_document_json": r.spec_document,
            "resolved_spec": doc.to_dict()["spec"] if doc else None,
            "created_at": iso(r.created_at),
        }

    return {
        **_summary(cfg, st),
        "spec_document_json": cfg.spec_document,
        "resolved_spec": resolved.to_dict()["spec"] if resolved else None,
        "resolved_spec_document": resolved.to_dict() if resolved else None,
        "latest_preview": latest.preview if latest else None,
        "revisions": [rev_view(r) for r in revisions],
        "draft_revisions": [draft_revision_view(d) for d in drafts],
    }


async def open_config(session: AsyncSession, ref: str) -> dict[str, Any]:
    cfg = await find_config(session, ref)
    await migrate_on_load(session, cfg)
    return await config_detail(session, cfg)


async def latest_revision(session: AsyncSession, cfg: ConversionConfig) -> ConfigRevision | None:
    return await session.scalar(
        select(ConfigRevision)
        .where(ConfigRevision.config_id == cfg.id)
        .order_by(ConfigRevision.revision_number.desc())
        .limit(1)
    )
