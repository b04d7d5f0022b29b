"""Documents: stored at once (the database is their source of truth), indexed by a sync run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context import runtime as rt
from kiln.apps.genai.context.chunking import clean_text, text_hash
from kiln.apps.genai.context.config import ContextSettings
from kiln.apps.genai.context.ingest import remove_documents
from kiln.apps.genai.context.models import Document, KnowledgeBase, SyncRun
from kiln.apps.genai.context.schema import normalize_metadata
from kiln.apps.genai.context.sync import enqueue
from kiln.apps.genai.errors import GenaiError

SOURCE_TYPES = ("manual", "upload", "api", "web", "note")
MAX_PAGES = 2000


def document_dto(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "knowledge_base_id": doc.knowledge_base_id,
        "title": doc.title,
        "source_type": doc.source_type,
        "source_name": doc.source_name,
        "uri": doc.uri,
        "text": doc.text,
        "metadata": doc.metadata_json,
        "chunk_count": doc.chunk_count,
        "ingest_status": doc.ingest_status,
        "ingest_error": doc.ingest_error,
        "source_id": doc.source_id,
        "source_path": doc.source_path,
        "source_document_key": doc.source_document_key,
        "managed_by_source": doc.managed_by_source,
        "created_at": doc.created_at.isoformat(),
        "updated_at": doc.updated_at.isoformat(),
    }


def _check_ingestible(kb: KnowledgeBase) -> None:
    if kb.vectorization_mode == "self_provided":
        raise GenaiError(409, "knowledge_base_self_provided", "Self-provided knowledge bases take no text documents")
    if kb.lifecycle_state != "active":
        raise GenaiError(409, "knowledge_base_archived", "The knowledge base is archived")


def _fields(
    kb: KnowledgeBase, body: dict[str, Any], settings: ContextSettings, *, partial: bool, doc: Document | None = None
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GenaiError(400, "invalid_payload", "Body must be an object")
    out: dict[str, Any] = {}
    if "title" in body or not partial:
        title = body.get("title")
        if not isinstance(title, str) or not title.strip() or len(title) > 500:
            raise GenaiError(400, "invalid_payload", "title is required (at most 500 characters)", {"field": "title"})
        out["title"] = title.strip()
    if "text" in body or not partial:
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise GenaiError(400, "invalid_payload", "text is required", {"field": "text"})
        if len(text) > settings.max_document_chars:
            raise GenaiError(413, "document_too_large", f"text is longer than {settings.max_document_chars} characters")
        out["text"] = clean_text(text)
    for key, limit in (("source_name", 500), ("uri", 2048)):
        if key in body:
            value = body[key]
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise GenaiError(400, "invalid_payload", f"{key} must be a string of at most {limit} characters")
            out[key] = value
    if "source_type" in body:
        if body["source_type"] not in SOURCE_TYPES + ("upload",):
            raise GenaiError(400, "invalid_payload", f"source_type must be one of {', '.join(SOURCE_TYPES)}")
        out["source_type"] = body["source_type"]
    if "metadata" in body or not partial:
        out["metadata_json"] = normalize_metadata(kb.schema_json, body.get("metadata"))
    if "page_texts" in body and body["page_texts"] is not None:
        pages = body["page_texts"]
        if (
            not isinstance(pages, list)
            or len(pages) > MAX_PAGES
            or not all(
                isinstance(p, dict) and isinstance(p.get("text"), str) and isinstance(p.get("page_number"), int)
                for p in pages
            )
        ):
            raise GenaiError(400, "invalid_payload", "page_texts must be a list of {page_number, text}")
        out["page_texts"] = [{"page_number": p["page_number"], "text": clean_text(p["text"])} for p in pages]
    return out


def _hash(doc: Document) -> str:
    return text_hash(f"{doc.title}\x1f{doc.text}\x1f{sorted((doc.metadata_json or {}).items())}\x1f{doc.page_texts}")


async def create_documents(
    session: AsyncSession,
    kernel: Any,
    kb: KnowledgeBase,
    bodies: list[dict[str, Any]],
    user_id: str | None,
    *,
    source_type: str = "manual",
) -> tuple[list[Document], SyncRun]:
    _check_ingestible(kb)
    settings = kernel.surface_settings(ContextSettings)
    docs = []
    for body in bodies:
        fields = _fields(kb, body, settings, partial=False)
        fields.setdefault("source_type", source_type)
        doc = Document(
            knowledge_base_id=kb.id, ingest_status="pending", chunk_count=0, managed_by_source=False, **fields
        )
        doc.content_hash = _hash(doc)
        docs.append(doc)
    session.add_all(docs)
    await session.flush()
    run = await enqueue(
        session, kernel, kb, "document_ingest", payload={"document_ids": [d.id for d in docs]}, user_id=user_id
    )
    return docs, run


async def get_document(session: AsyncSession, kb: KnowledgeBase, document_id: str) -> Document:
    doc = await session.get(Document, document_id) if len(document_id) <= 64 else None
    if doc is None or doc.knowledge_base_id != kb.id:
        raise GenaiError(404, "document_not_found", "Document not found")
    return doc


async def update_document(
    session: AsyncSession, kernel: Any, kb: KnowledgeBase, doc: Document, body: dict[str, Any], user_id: str | None
) -> SyncRun | None:
    """The row changes now; its chunks are replaced by the run (the old ones serve until then)."""
    _check_ingestible(kb)
    if doc.managed_by_source:
        raise GenaiError(409, "document_managed_by_source", "Edit the source's files: this document follows them")
    for key, value in _fields(kb, body, kernel.surface_settings(ContextSettings), partial=True, doc=doc).items():
        setattr(doc, key, value)
    doc.content_hash = _hash(doc)
    if doc.content_hash == doc.indexed_hash:
        await session.commit()
        return None
    doc.ingest_status = "pending"
    return await enqueue(session, kernel, kb, "document_ingest", payload={"document_ids": [doc.id]}, user_id=user_id)


async def delete_document(session: AsyncSession, kernel: Any, kb: KnowledgeBase, doc: Document) -> None:
    store = await rt.store_for(session, kernel, kb.backing_provider_instance_id)
    try:
        await remove_documents(session, kb, store, [doc.id])
    finally:
        await rt.close_store(store)


async def list_documents(
    session: AsyncSession, kb: KnowledgeBase, limit: int, offset: int
) -> tuple[list[Document], int]:
    total = await session.scalar(select(func.count()).select_from(Document).where(Document.knowledge_base_id == kb.id))
    rows = (
        await session.execute(
            select(Document)
            .where(Document.knowledge_base_id == kb.id)
            .order_by(Document.created_at, Document.id)
            .limit(limit)
            .offset(offset)
        )
    ).scalars()
    return list(rows), int(total or 0)
