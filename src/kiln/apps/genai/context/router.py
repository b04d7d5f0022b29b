"""`/v1/context/*`: schema profiles, vectorization options, knowledge bases, sources, sync runs,
documents, uploads and the retrieval test. Reads need admin, writes superadmin (§2.3)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Body, Query, Request
from sqlalchemy import select

from kiln.apps.genai.context import documents as docs_service
from kiln.apps.genai.context import service, sources
from kiln.apps.genai.context.config import ContextSettings
from kiln.apps.genai.context.models import KnowledgeSource, SyncRun
from kiln.apps.genai.context.parsers import ParseError, parse_file
from kiln.apps.genai.context.query import run_query
from kiln.apps.genai.context.sync import enqueue, run_dto
from kiln.apps.genai.deps import AdminUser, KernelDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.platform.resources import register_resource_resolver
from kiln.core.params import Offset

router = genai_router(tags=["genai"])
register_resource_resolver("knowledge_base", service.knowledge_base_resource)
JsonBody = Body(default_factory=dict)
KB = "/v1/context/knowledge-bases"


def _settings(kernel: Any) -> ContextSettings:
    return kernel.surface_settings(ContextSettings)


@router.get("/v1/context/schema-profiles")
async def list_profiles(
    user: AdminUser, session: SessionDep, provider_key: str | None = Query(default=None, max_length=80)
) -> dict[str, Any]:
    return {"schema_profiles": await service.list_schema_profiles(session, provider_key)}


@router.post("/v1/context/schema-profiles", status_code=201)
async def create_profile(user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    return {"schema_profile": await service.create_schema_profile(session, body)}


@router.get("/v1/context/vectorization-options")
async def vectorization_options(user: AdminUser, session: SessionDep) -> dict[str, Any]:
    return await service.vectorization_options(session)


@router.get(KB)
async def list_kbs(user: AdminUser, session: SessionDep) -> dict[str, Any]:
    return {"knowledge_bases": await service.list_kbs(session)}


@router.post(KB, status_code=201)
async def create_kb(
    user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    kb = await service.create_kb(session, kernel, body, user.id)
    return {"knowledge_base": await service.kb_detail(session, kb)}


@router.get(KB + "/{kb_id}")
async def get_kb(kb_id: str, user: AdminUser, session: SessionDep) -> dict[str, Any]:
    return {"knowledge_base": await service.kb_detail(session, await service.get_kb(session, kb_id))}


@router.put(KB + "/{kb_id}")
async def update_kb(
    kb_id: str, user: SuperadminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    await service.update_kb(session, kb, body, user.id)
    return {"knowledge_base": await service.kb_detail(session, kb)}


@router.delete(KB + "/{kb_id}")
async def delete_kb(kb_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    await service.delete_kb(session, kernel, await service.get_kb(session, kb_id))
    return {"deleted": True, "id": kb_id}


@router.post(KB + "/{kb_id}/resync", status_code=202)
async def resync(kb_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    if kb.vectorization_mode == "self_provided":
        raise GenaiError(409, "knowledge_base_self_provided", "Self-provided knowledge bases are not re-embedded")
    run = await enqueue(session, kernel, kb, "knowledge_resync", user_id=user.id)
    return {"knowledge_base": await service.kb_detail(session, kb), "sync_run": run_dto(run)}


@router.post(KB + "/{kb_id}/query")
async def query(
    kb_id: str, user: AdminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    return await run_query(session, kernel, await service.get_kb(session, kb_id), body)


# ------------------------------------------------------------------------------ sources, runs


async def _source(session: Any, kb_id: str, source_id: str) -> KnowledgeSource:
    source = await session.get(KnowledgeSource, source_id) if len(source_id) <= 64 else None
    if source is None or source.knowledge_base_id != kb_id:
        raise GenaiError(404, "knowledge_source_not_found", "Knowledge source not found")
    return source


@router.get(KB + "/{kb_id}/sources")
async def list_sources(kb_id: str, user: AdminUser, session: SessionDep) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    rows = (
        await session.execute(
            select(KnowledgeSource)
            .where(KnowledgeSource.knowledge_base_id == kb.id)
            .order_by(KnowledgeSource.created_at)
        )
    ).scalars()
    return {"sources": [sources.source_dto(s) for s in rows]}


@router.post(KB + "/{kb_id}/sources", status_code=201)
async def create_source(
    kb_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    return {"source": sources.source_dto(await sources.create_source(session, _settings(kernel), kb, body))}


@router.put(KB + "/{kb_id}/sources/{source_id}")
async def update_source(
    kb_id: str,
    source_id: str,
    user: SuperadminUser,
    session: SessionDep,
    kernel: KernelDep,
    body: dict[str, Any] = JsonBody,
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    source = await _source(session, kb.id, source_id)
    await sources.update_source(session, _settings(kernel), kb, source, body)
    return {"source": sources.source_dto(source)}


@router.delete(KB + "/{kb_id}/sources/{source_id}")
async def delete_source(
    kb_id: str, source_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    source = await _source(session, kb.id, source_id)
    from kiln.apps.genai.context.models import Document

    managed = list((await session.execute(select(Document.id).where(Document.source_id == source.id))).scalars())
    if managed:
        from kiln.apps.genai.context import runtime as rt
        from kiln.apps.genai.context.ingest import remove_documents

        store = await rt.store_for(session, kernel, kb.backing_provider_instance_id)
        try:
            await remove_documents(session, kb, store, managed)
        finally:
            await rt.close_store(store)
    await session.delete(source)
    await session.commit()
    return {"deleted": True, "id": source_id, "deleted_document_count": len(managed)}


@router.post(KB + "/{kb_id}/sources/{source_id}/sync", status_code=202)
async def sync_source(
    kb_id: str, source_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    source = await _source(session, kb.id, source_id)
    if source.lifecycle_state != "active":
        raise GenaiError(409, "knowledge_source_archived", "The source is archived")
    run = await enqueue(session, kernel, kb, "source_sync", source_id=source.id, user_id=user.id)
    return {
        "knowledge_base": await service.kb_detail(session, kb),
        "source": sources.source_dto(source),
        "sync_run": run_dto(run),
    }


@router.get(KB + "/{kb_id}/sync-runs")
async def list_runs(
    kb_id: str, user: AdminUser, session: SessionDep, limit: int = Query(default=50, ge=1, le=500)
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    rows = (
        await session.execute(
            select(SyncRun)
            .where(SyncRun.knowledge_base_id == kb.id)
            .order_by(SyncRun.created_at.desc(), SyncRun.id)
            .limit(limit)
        )
    ).scalars()
    return {"sync_runs": [run_dto(r) for r in rows]}


# ------------------------------------------------------------------------------ documents


@router.get(KB + "/{kb_id}/documents")
async def list_documents(
    kb_id: str, user: AdminUser, session: SessionDep, limit: int = Query(default=100, ge=1, le=1000), offset: Offset = 0
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    rows, total = await docs_service.list_documents(session, kb, limit, offset)
    return {"documents": [docs_service.document_dto(d) for d in rows], "count": total}


@router.post(KB + "/{kb_id}/documents", status_code=201)
async def create_document(
    kb_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    (doc,), run = await docs_service.create_documents(session, kernel, kb, [body], user.id)
    return {"document": docs_service.document_dto(doc), "sync_run": run_dto(run)}


@router.put(KB + "/{kb_id}/documents/{document_id}")
async def update_document(
    kb_id: str,
    document_id: str,
    user: SuperadminUser,
    session: SessionDep,
    kernel: KernelDep,
    body: dict[str, Any] = JsonBody,
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    doc = await docs_service.get_document(session, kb, document_id)
    run = await docs_service.update_document(session, kernel, kb, doc, body, user.id)
    return {"document": docs_service.document_dto(doc), "sync_run": run_dto(run) if run else None}


@router.delete(KB + "/{kb_id}/documents/{document_id}")
async def delete_document(
    kb_id: str, document_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    await docs_service.delete_document(session, kernel, kb, await docs_service.get_document(session, kb, document_id))
    return {"deleted": True, "id": document_id}


@router.post(KB + "/{kb_id}/uploads", status_code=201)
async def upload(
    kb_id: str, request: Request, user: SuperadminUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    kb = await service.get_kb(session, kb_id)
    settings = _settings(kernel)
    try:
        form = await request.form(max_files=settings.max_upload_files + 1, max_fields=20)
    except Exception as exc:  # multipart parse errors of every kind
        raise GenaiError(400, "invalid_upload", "The body is not a readable multipart form") from exc
    files = [f for key in ("files", "files[]", "file") for f in form.getlist(key) if hasattr(f, "read")]
    if not files:
        raise GenaiError(400, "upload_no_files", "No files in the form field `files`")
    if len(files) > settings.max_upload_files:
        raise GenaiError(400, "upload_too_many_files", f"At most {settings.max_upload_files} files per upload")
    metadata: dict[str, Any] = {}
    if isinstance(form.get("metadata"), str) and form["metadata"].strip():
        try:
            metadata = json.loads(form["metadata"])  # type: ignore[arg-type]
        except ValueError:
            raise GenaiError(400, "invalid_metadata", "metadata must be a JSON object") from None
    bodies: list[dict[str, Any]] = []
    for item in files:
        name = str(item.filename or "upload")[:255]
        data = await item.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise GenaiError(413, "upload_too_large", f"{name} is larger than {settings.max_upload_bytes} bytes")
        try:
            parsed = parse_file(name, data)
        except ParseError as exc:
            raise GenaiError(415 if exc.code == "unsupported_file_type" else 400, exc.code, exc.message) from exc
        for doc in parsed:
            bodies.append(
                {
                    "title": doc["title"],
                    "text": doc["text"],
                    "page_texts": doc.get("page_texts"),
                    "metadata": {**metadata, **(doc.get("metadata") or {})},
                    "source_type": "upload",
                    "source_name": doc.get("source_name") or name,
                    "uri": doc.get("uri"),
                }
            )
        if len(bodies) > settings.max_documents_per_upload:
            raise GenaiError(
                400,
                "upload_too_many_documents",
                f"An upload may yield at most {settings.max_documents_per_upload} documents",
            )
    created, run = await docs_service.create_documents(session, kernel, kb, bodies, user.id, source_type="upload")
    return {
        "documents": [docs_service.document_dto(d) for d in created],
        "count": len(created),
        "sync_run": run_dto(run),
    }
