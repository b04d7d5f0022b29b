"""`/v1/playgrounds/*`: sessions (owner-scoped), messages and their SSE stream, temporary
(unpersisted) messages, options, and the source file of a cited local-directory document."""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import Body, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.config import ContextSettings
from kiln.apps.genai.context.models import Document, KnowledgeBase, KnowledgeSource
from kiln.apps.genai.context.sources import resolve_root
from kiln.apps.genai.deps import CurrentUser, KernelDep, SessionDep, TurnCaller
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.playgrounds import chat, relay
from kiln.apps.genai.playgrounds import service as svc
from kiln.core.auth import AuthContext, DeferredLogin
from kiln.core.blobs import UnsafePathError
from kiln.core.files import range_response, safe_join

router = genai_router(prefix="/v1/playgrounds", tags=["genai playgrounds"])
JsonBody = Body(default_factory=dict)


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GenaiError(400, "invalid_payload", "Body must be a JSON object")
    return body


async def _stream_after_rollback(session: AsyncSession, turn: chat.Turn) -> Response:
    """The turn's SSE response; its model call starts before the request's session is released
    (`relay.stream`), so the rollback is not on the path to the first token."""
    response = await relay.stream(turn)
    try:
        await session.rollback()  # nothing written; release the connection
    except BaseException:
        response.relay.cancel()
        raise
    return response


async def _session_turn(
    session: AsyncSession, kernel: Any, caller: AuthContext | DeferredLogin, session_id: str, body: Any
) -> chat.Turn:
    """The caller's session is read first: for a login whose check was deferred (`TurnCaller`), that
    statement also authenticates it, so a bad token still answers before anything else."""
    read = await svc.owned_for_turn(session, caller, session_id, chat.HISTORY_MESSAGES)
    return await chat.prepare_for_session(session, kernel, read, chat.parse_prompt(body_object(body)))


# The turn routes first: a route is matched by trying the router's routes in order.
@router.post("/sessions/{session_id}/messages")
async def send_message(
    session_id: str, caller: TurnCaller, session: SessionDep, kernel: KernelDep, body: Any = JsonBody
) -> dict[str, Any]:
    turn = await _session_turn(session, kernel, caller, session_id, body)
    await session.rollback()  # nothing written; release the connection before the model call
    return await chat.answer(turn)


@router.post("/sessions/{session_id}/messages/stream")
async def stream_message(
    session_id: str, caller: TurnCaller, session: SessionDep, kernel: KernelDep, body: Any = JsonBody
) -> Response:
    turn = await _session_turn(session, kernel, caller, session_id, body)
    return await _stream_after_rollback(session, turn)


@router.post("/temporary/messages")
async def temporary_message(
    user: CurrentUser, session: SessionDep, kernel: KernelDep, body: Any = JsonBody
) -> dict[str, Any]:
    turn = await chat.prepare_temporary(session, kernel, user, body_object(body))
    await session.rollback()
    return await chat.answer(turn)


@router.post("/temporary/messages/stream")
async def temporary_stream(user: CurrentUser, session: SessionDep, kernel: KernelDep, body: Any = JsonBody) -> Response:
    turn = await chat.prepare_temporary(session, kernel, user, body_object(body))
    return await _stream_after_rollback(session, turn)


@router.get("/sessions")
async def list_sessions(
    user: CurrentUser, session: SessionDep, playground_kind: str | None = Query(default=None)
) -> dict[str, Any]:
    return {"sessions": [svc.session_dto(s) for s in await svc.list_sessions(session, user, playground_kind)]}


@router.post("/sessions", status_code=201)
async def create_session(user: CurrentUser, session: SessionDep, body: Any = JsonBody) -> dict[str, Any]:
    row = await svc.create_session(session, user, body_object(body))
    await session.commit()
    return {"session": svc.session_dto(row, [])}


@router.get("/sessions/{session_id}")
async def get_session(session_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    row = await svc.owned(session, user, session_id)
    return {"session": svc.session_dto(row, await svc.messages_of(session, row.id))}


@router.patch("/sessions/{session_id}")
async def patch_session(
    session_id: str, user: CurrentUser, session: SessionDep, body: Any = JsonBody
) -> dict[str, Any]:
    row = await svc.update_session(session, user, session_id, body_object(body))
    await session.commit()
    return {"session": svc.session_dto(row)}


@router.delete("/sessions/{session_id}")
async def delete_session(session_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    await svc.delete_session(session, user, session_id)
    await session.commit()
    return {"deleted": True}


@router.get("/options")
async def options(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {
        "assistants": svc.assistants_for(None),
        "models": await svc.model_options(session, user),
        **await svc.knowledge_base_options(session),
    }


@router.get("/model-options")
async def model_options(
    user: CurrentUser, session: SessionDep, playground_kind: str | None = Query(default=None)
) -> dict[str, Any]:
    kind = svc.parse_kind(playground_kind) if playground_kind is not None else None
    return {"assistants": svc.assistants_for(kind), "models": await svc.model_options(session, user)}


@router.get("/knowledge-base-options")
async def knowledge_base_options(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return await svc.knowledge_base_options(session)


@router.get("/knowledge-bases/{kb_id}/documents/{document_id}/source-file")
async def source_file(
    kb_id: str, document_id: str, request: Request, user: CurrentUser, session: SessionDep, kernel: KernelDep
) -> Response:
    """The file a local-directory document came from, for a KB the caller can chat with (bound in
    the active deployment, active and ready); the path is re-resolved under the source roots."""
    bound, _ = await svc.bound_knowledge_bases(session)
    kb: KnowledgeBase | None = next((k for k in bound if k.id == kb_id), None)
    doc = await session.get(Document, document_id) if kb is not None and len(document_id) <= 64 else None
    if kb is None or doc is None or doc.knowledge_base_id != kb.id:
        raise GenaiError(404, "document_not_found", "Document not found")
    source = await session.get(KnowledgeSource, doc.source_id) if doc.source_id else None
    if source is None or not doc.source_path:
        raise GenaiError(404, "source_file_not_found", "This document has no source file")
    root = resolve_root(kernel.surface_settings(ContextSettings), source.relative_path)
    try:
        path = safe_join(root, doc.source_path)
    except (UnsafePathError, ValueError):
        raise GenaiError(404, "source_file_not_found", "Source file not found") from None
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    try:
        return await range_response(request, path, media, path.name, inline=True)
    except FileNotFoundError:
        raise GenaiError(404, "source_file_not_found", "Source file not found") from None
