"""Local-directory sources: directories under `KILN_CONTEXT_SOURCE_ROOTS` (nothing outside them,
symlinks resolved first), include/exclude globs on the relative path, and deterministic document
identity (UUIDv5 of source id + `<relative path>#<position>`): a re-sync updates documents in
place, creates the new ones, deletes the vanished ones and never duplicates."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.chunking import clean_text, text_hash
from kiln.apps.genai.context.config import ContextSettings
from kiln.apps.genai.context.ingest import IngestError, Runtime, index_documents, remove_documents
from kiln.apps.genai.context.models import Document, KnowledgeBase, KnowledgeSource, SyncRun
from kiln.apps.genai.context.parsers import SUPPORTED, ParseError, parse_file
from kiln.apps.genai.context.schema import normalize_metadata
from kiln.apps.genai.errors import GenaiError

SOURCE_NS = uuid.UUID("0b7f6a2e-51c4-4c3e-9a8d-2f6e1d9c4b70")
MAX_GLOBS = 50


def source_dto(source: KnowledgeSource) -> dict[str, Any]:
    return {
        "id": source.id,
        "knowledge_base_id": source.knowledge_base_id,
        "source_type": source.source_type,
        "display_name": source.display_name,
        "relative_path": source.relative_path,
        "include_globs": source.include_globs,
        "exclude_globs": source.exclude_globs,
        "metadata": source.metadata_json,
        "lifecycle_state": source.lifecycle_state,
        "last_sync_status": source.last_sync_status,
        "last_sync_at": source.last_sync_at.isoformat() if source.last_sync_at else None,
        "last_sync_error": source.last_sync_error,
        "created_at": source.created_at.isoformat(),
        "updated_at": source.updated_at.isoformat(),
    }


def resolve_root(settings: ContextSettings, relative_path: Any) -> Path:
    """The source directory: `relative_path` under exactly one configured root, symlinks resolved."""
    if (
        not isinstance(relative_path, str)
        or not relative_path.strip()
        or len(relative_path) > 1024
        or "\x00" in relative_path
    ):
        raise GenaiError(400, "invalid_source_path", "relative_path must be a non-empty path")
    if not settings.source_roots:
        raise GenaiError(409, "source_roots_not_configured", "No KILN_CONTEXT_SOURCE_ROOTS are configured")
    parts = Path(relative_path.strip())
    if parts.is_absolute() or ".." in parts.parts:
        raise GenaiError(400, "invalid_source_path", "relative_path must be relative, without '..'")
    matches = []
    for root in settings.source_roots:
        base = Path(root).resolve()
        candidate = (base / parts).resolve()
        if (candidate == base or base in candidate.parents) and candidate.is_dir():
            matches.append(candidate)
    if len(matches) != 1:
        raise GenaiError(
            400, "invalid_source_path", "relative_path must name a directory under exactly one configured source root"
        )
    return matches[0]


def _globs(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_GLOBS
        or not all(isinstance(g, str) and 0 < len(g) <= 200 for g in value)
    ):
        raise GenaiError(400, "invalid_globs", f"{field} must be a list of at most {MAX_GLOBS} patterns")
    return value


async def create_source(
    session: AsyncSession, settings: ContextSettings, kb: KnowledgeBase, body: dict[str, Any]
) -> KnowledgeSource:
    if body.get("source_type", "local_directory") != "local_directory":
        raise GenaiError(400, "invalid_source_type", "Only local_directory sources are supported")
    resolve_root(settings, body.get("relative_path"))
    relative = str(Path(body["relative_path"].strip()))
    if await session.scalar(
        select(KnowledgeSource.id).where(
            KnowledgeSource.knowledge_base_id == kb.id, KnowledgeSource.relative_path == relative
        )
    ):
        raise GenaiError(409, "knowledge_source_exists", "This knowledge base already has a source for that path")
    name = body.get("display_name") or relative
    if not isinstance(name, str) or len(name) > 200:
        raise GenaiError(400, "invalid_payload", "display_name must be a string of at most 200 characters")
    source = KnowledgeSource(
        knowledge_base_id=kb.id,
        source_type="local_directory",
        display_name=name,
        relative_path=relative,
        include_globs=_globs(body.get("include_globs"), "include_globs"),
        exclude_globs=_globs(body.get("exclude_globs"), "exclude_globs"),
        metadata_json=normalize_metadata(kb.schema_json, body.get("metadata")),
        lifecycle_state="active",
        last_sync_status="idle",
    )
    session.add(source)
    await session.commit()
    return source


async def update_source(
    session: AsyncSession, settings: ContextSettings, kb: KnowledgeBase, source: KnowledgeSource, body: dict[str, Any]
) -> None:
    if "relative_path" in body and body["relative_path"] != source.relative_path:
        resolve_root(settings, body["relative_path"])
        source.relative_path = str(Path(body["relative_path"].strip()))
    if "display_name" in body:
        if not isinstance(body["display_name"], str) or not 0 < len(body["display_name"]) <= 200:
            raise GenaiError(400, "invalid_payload", "display_name must be a string of at most 200 characters")
        source.display_name = body["display_name"]
    if "include_globs" in body:
        source.include_globs = _globs(body["include_globs"], "include_globs")
    if "exclude_globs" in body:
        source.exclude_globs = _globs(body["exclude_globs"], "exclude_globs")
    if "metadata" in body:
        source.metadata_json = normalize_metadata(kb.schema_json, body["metadata"])
    if "lifecycle_state" in body:
        if body["lifecycle_state"] not in ("active", "archived"):
            raise GenaiError(400, "invalid_lifecycle_state", "lifecycle_state must be active or archived")
        source.lifecycle_state = body["lifecycle_state"]
    await session.commit()


def _matches(relative: str, include: list[str], exclude: list[str]) -> bool:
    if include and not any(fnmatch.fnmatch(relative, g) for g in include):
        return False
    return not any(fnmatch.fnmatch(relative, g) for g in exclude)


def scan(root: Path, include: list[str], exclude: list[str], limit: int) -> list[tuple[str, Path]]:
    """Supported files under `root` (links followed only while they stay inside it), sorted."""
    found: list[tuple[str, Path]] = []
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(directory) / name
            if path.suffix.lower() not in SUPPORTED:
                continue
            real = path.resolve()
            if root not in real.parents or not real.is_file():
                continue  # a symlink leading outside the source
            relative = path.relative_to(root).as_posix()
            if _matches(relative, include, exclude):
                found.append((relative, real))
                if len(found) > limit:
                    raise IngestError("source_too_many_files", f"The source holds more than {limit} files")
    return found


async def sync_source(
    session: AsyncSession,
    kernel: Any,
    run: SyncRun,
    kb: KnowledgeBase,
    source: KnowledgeSource,
    runtime: Runtime,
    progress: Any,
) -> str:
    settings = kernel.surface_settings(ContextSettings)
    source.last_sync_status = "syncing"
    await session.commit()
    try:
        root = resolve_root(settings, source.relative_path)
    except GenaiError as exc:
        raise IngestError(exc.code, exc.message) from exc
    files = await asyncio.to_thread(scan, root, source.include_globs, source.exclude_globs, settings.max_source_files)
    run.total_file_count, run.current_step = len(files), "scanning"
    existing = {
        doc.source_document_key: doc
        for doc in (
            await session.execute(
                select(Document).where(Document.knowledge_base_id == kb.id, Document.source_id == source.id)
            )
        ).scalars()
    }
    seen: set[str] = set()
    changed: list[str] = []
    created = updated = 0
    for number, (relative, path) in enumerate(files, start=1):
        run.current_path = relative
        try:
            if path.stat().st_size > settings.max_upload_bytes:
                raise ParseError("file_too_large", f"{relative} is larger than the upload limit")
            docs = parse_file(path.name, await asyncio.to_thread(path.read_bytes))
        except (ParseError, OSError) as exc:
            run.error_summary = (run.error_summary or "") + f"{relative}: {getattr(exc, 'message', exc)}\n"
            docs = []
        file_changed = False
        for position, parsed in enumerate(docs):
            key = f"{relative}#{position}"
            seen.add(key)
            metadata = {**source.metadata_json, **normalize_metadata(kb.schema_json, parsed.get("metadata"))}
            text = parsed["text"][: settings.max_document_chars]
            digest = text_hash(f"{parsed['title']}\x1f{text}\x1f{sorted(metadata.items())}")
            doc = existing.get(key)
            if doc is None:
                doc = Document(
                    id=str(uuid.uuid5(SOURCE_NS, f"{source.id}:{key}")),
                    knowledge_base_id=kb.id,
                    source_type="local_directory",
                    source_name=source.display_name,
                    ingest_status="pending",
                    source_id=source.id,
                    source_path=relative,
                    source_document_key=key,
                    managed_by_source=True,
                    chunk_count=0,
                    title="",
                    text="",
                    content_hash="",
                )
                session.add(doc)
                created += 1
            elif doc.content_hash == digest:
                continue
            else:
                updated += 1
            doc.title, doc.text, doc.page_texts = parsed["title"], clean_text(text), parsed.get("page_texts")
            doc.metadata_json, doc.content_hash, doc.uri = metadata, digest, f"file://{source.relative_path}/{relative}"
            changed.append(doc.id)
            file_changed = True
        run.processed_file_count, run.scanned_file_count = number, number
        run.changed_file_count += int(file_changed)
        await session.commit()
        if progress:
            await progress(0.5 * number / max(len(files), 1), f"scanned {number}/{len(files)} files")
    gone = [doc.id for key, doc in existing.items() if key not in seen]
    run.total_document_count = len(changed)
    run.current_step = "indexing"
    await session.commit()

    async def step(done: int, total: int) -> None:
        run.processed_document_count = done
        await session.commit()
        if progress:
            await progress(0.5 + 0.5 * done / max(total, 1), f"indexed {done}/{total} documents")

    if changed:
        await index_documents(session, kb, runtime, changed, progress=step)
    if gone:
        await remove_documents(session, kb, runtime.store, gone)
    run.created_document_count += created
    run.updated_document_count += updated
    run.deleted_document_count += len(gone)
    run.deleted_file_count += len({key.split("#")[0] for key in existing if key not in seen})
    source = await session.get(KnowledgeSource, source.id)  # type: ignore[assignment]
    source.last_sync_status, source.last_sync_at, source.last_sync_error = "ready", run.started_at, None
    await session.commit()
    return f"Source {source.display_name}: {created} created, {updated} updated, {len(gone)} deleted"


async def source_count(session: AsyncSession, kb_id: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(KnowledgeSource).where(KnowledgeSource.knowledge_base_id == kb_id)
        )
        or 0
    )
