"""Playground sessions: create/list/get/patch/delete, owner-scoped (another user's session is
404), messages appended under a row lock, and the options a user may pick from (models bound in
the active `llm_inference` binding and invokable, the static assistants, active+ready knowledge
bases bound in the active vector binding)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.models import KnowledgeBase
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.access import shared_model_ids
from kiln.apps.genai.modelops.inference import TARGET_COLUMNS, Target, join_target
from kiln.apps.genai.modelops.models import GenaiModel
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import active_bindings
from kiln.apps.genai.platform.models import GenaiActiveDeployment
from kiln.apps.genai.playgrounds.models import PlaygroundMessage, PlaygroundSession
from kiln.apps.genai.registry.models import GenaiRegistryVersion
from kiln.core.auth import LOGIN_REVOKED, LOGIN_USER_ID, AuthContext, DeferredLogin, User
from kiln.core.db import iso_or_none as _iso
from kiln.core.db import utcnow

KINDS = ("chat", "knowledge")
ASSISTANTS = [
    {
        "assistant_ref": "assistant.playground.chat",
        "display_name": "Playground chat",
        "description": "A plain conversation with the selected model.",
        "playground_kind": "chat",
        "agent_id": None,
        "knowledge_required": False,
    },
    {
        "assistant_ref": "assistant.vanessa.core",
        "display_name": "Core assistant",
        "description": "The general assistant.",
        "playground_kind": "chat",
        "agent_id": None,
        "knowledge_required": False,
    },
    {
        "assistant_ref": "agent.knowledge_chat",
        "display_name": "Knowledge chat",
        "description": "Answers from a knowledge base, citing the chunks it used.",
        "playground_kind": "knowledge",
        "agent_id": "agent.knowledge_chat",
        "knowledge_required": True,
    },
]
DEFAULT_ASSISTANT = {"chat": "assistant.playground.chat", "knowledge": "agent.knowledge_chat"}
SEARCH_METHODS = ("semantic", "keyword", "hybrid")
MAX_TITLE = 200
MAX_SESSIONS_LISTED = 500
MAX_MESSAGES_SHOWN = 1000


def message_dto(m: PlaygroundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "metadata": m.metadata_json or {},
        "createdAt": _iso(m.created_at),
        "created_at": _iso(m.created_at),
    }


def session_dto(s: PlaygroundSession, messages: list[PlaygroundMessage] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": s.id,
        "playground_kind": s.playground_kind,
        "assistant_ref": s.assistant_ref,
        "title": s.title,
        "title_source": s.title_source,
        "model_selection": {"model_id": s.model_id},
        "knowledge_binding": {"knowledge_base_id": s.knowledge_base_id, **(s.retrieval_json or {})},
        "message_count": s.message_count,
        "created_at": _iso(s.created_at),
        "updated_at": _iso(s.updated_at),
    }
    if messages is not None:
        out["messages"] = [message_dto(m) for m in messages]
    return out


def parse_kind(value: Any, default: str | None = None) -> str:
    kind = value if value is not None else default
    if kind not in KINDS:
        raise GenaiError(400, "invalid_playground_kind", "playground_kind must be chat or knowledge")
    return kind


def _model_id(body: dict[str, Any]) -> str | None:
    selection = body.get("model_selection")
    if selection is None:
        return None
    if not isinstance(selection, dict):
        raise GenaiError(400, "invalid_model_selection", "model_selection must be an object")
    value = selection.get("model_id")
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 200):
        raise GenaiError(400, "invalid_model_selection", "model_selection.model_id must be a model id")
    return value or None


def parse_knowledge_binding(value: Any) -> tuple[str | None, dict[str, Any]]:
    """The KB id and the retrieval settings a session keeps (search method, top_k, alpha, filters)."""
    if value is None:
        return None, {}
    if not isinstance(value, dict):
        raise GenaiError(400, "invalid_knowledge_binding", "knowledge_binding must be an object")
    kb_id = value.get("knowledge_base_id")
    if kb_id is not None and (not isinstance(kb_id, str) or not 0 < len(kb_id) <= 64):
        raise GenaiError(400, "invalid_knowledge_binding", "knowledge_base_id must be an id")
    settings: dict[str, Any] = {}
    if (method := value.get("search_method")) is not None:
        if method not in SEARCH_METHODS:
            raise GenaiError(400, "invalid_search_method", "search_method must be semantic, keyword or hybrid")
        settings["search_method"] = method
    if (top_k := value.get("top_k")) is not None:
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 20:
            raise GenaiError(400, "invalid_top_k", "top_k must be an integer 1..20")
        settings["top_k"] = top_k
    if (alpha := value.get("hybrid_alpha")) is not None:
        if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
            raise GenaiError(400, "invalid_hybrid_alpha", "hybrid_alpha must be a number in 0..1")
        settings["hybrid_alpha"] = float(alpha)
    if (filters := value.get("filters")) is not None:
        if (
            not isinstance(filters, dict)
            or len(filters) > 20
            or not all(isinstance(v, str | int | float | bool) for v in filters.values())
        ):
            raise GenaiError(400, "invalid_filters", "filters maps at most 20 fields to scalar values")
        settings["filters"] = filters
    return kb_id or None, settings


def _assistant(kind: str, value: Any) -> str:
    ref = value or DEFAULT_ASSISTANT[kind]
    if not any(a["assistant_ref"] == ref and a["playground_kind"] == kind for a in ASSISTANTS):
        raise GenaiError(400, "invalid_assistant_ref", f"Unknown {kind} assistant {str(ref)[:100]!r}")
    return ref


def _title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TITLE:
        raise GenaiError(400, "invalid_title", f"title must be 1..{MAX_TITLE} characters")
    return value.strip()


async def create_session(session: AsyncSession, user: User, body: dict[str, Any]) -> PlaygroundSession:
    kind = parse_kind(body.get("playground_kind"), "chat")
    kb_id, retrieval = parse_knowledge_binding(body.get("knowledge_binding"))
    row = PlaygroundSession(
        owner_user_id=user.id,
        playground_kind=kind,
        assistant_ref=_assistant(kind, body.get("assistant_ref")),
        model_id=_model_id(body),
        knowledge_base_id=kb_id if kind == "knowledge" else None,
        retrieval_json=retrieval if kind == "knowledge" else {},
        message_count=0,
        title=_title(body["title"]) if body.get("title") is not None else "New conversation",
        title_source="manual" if body.get("title") is not None else "auto",
    )
    session.add(row)
    await session.flush()
    return row


async def owned(session: AsyncSession, user: User, session_id: str, *, lock: bool = False) -> PlaygroundSession:
    stmt = select(PlaygroundSession).where(
        PlaygroundSession.id == session_id, PlaygroundSession.owner_user_id == user.id
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none() if len(session_id) <= 64 else None
    if row is None:
        raise GenaiError(404, "playground_session_not_found", "Playground session not found")
    return row


def _turn_statement(*, login: bool = False) -> Any:
    """The caller's session, its last `limit` messages and its model's target columns (model, the
    active llm_inference binding's provider and resource for it), the active deployment's pointer
    row, the session's knowledge base and its assistant's current spec: one row per message. With
    `login`, the owner is the login JWT's user (`LOGIN_USER_ID`) and each row also carries that
    user's row and whether the token is revoked (`DeferredLogin`)."""
    recent = (
        select(PlaygroundMessage.id)
        .where(PlaygroundMessage.session_id == bindparam("session_id"))
        .order_by(PlaygroundMessage.message_index.desc())
        .limit(bindparam("limit"))
        .scalar_subquery()
    )
    spec = (
        select(GenaiRegistryVersion.spec)
        .where(GenaiRegistryVersion.entity_id == PlaygroundSession.assistant_ref, GenaiRegistryVersion.is_current)
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        select(PlaygroundSession, PlaygroundMessage, *TARGET_COLUMNS, GenaiActiveDeployment, KnowledgeBase, spec)
        .outerjoin(
            PlaygroundMessage, (PlaygroundMessage.session_id == PlaygroundSession.id) & PlaygroundMessage.id.in_(recent)
        )
        .outerjoin(GenaiModel, GenaiModel.model_id == PlaygroundSession.model_id)
        .outerjoin(KnowledgeBase, KnowledgeBase.id == PlaygroundSession.knowledge_base_id)
    )
    owner = LOGIN_USER_ID if login else bindparam("owner_user_id")
    if login:
        stmt = stmt.add_columns(User, LOGIN_REVOKED).join(User, User.id == PlaygroundSession.owner_user_id)
    return (
        join_target(stmt)
        .where(PlaygroundSession.id == bindparam("session_id"), PlaygroundSession.owner_user_id == owner)
        .order_by(PlaygroundMessage.message_index)
    )


# Built once: every streamed turn runs it before its first token, and building the statement (and
# its cache key) per call cost more CPU than running it on SQLite. The model's columns ride along
# so that a turn reads everything before the model call in one statement (was two); so do the
# rows a knowledge turn reads next (the active deployment's pointer and the KB: `session.get`
# finds them in the session's identity map) and the assistant's instructions (three statements
# fewer before a knowledge turn's first token).
_TURN = _turn_statement()
_TURN_OF_LOGIN = _turn_statement(login=True)


@dataclass
class TurnRows:
    user: User  # the caller (detached)
    session: PlaygroundSession
    messages: list[PlaygroundMessage]  # the last `limit`, oldest first
    target: Target  # the model's target columns for `modelops.inference.prepare`
    instructions: str | None  # the session's agent's current instructions (None: no agent, or none set)
    # The active deployment's pointer and the session's KB, which the turn reads next by primary key
    # (`session.get`): referenced here so that the session's identity map, whose references are weak,
    # still holds them then.
    held: tuple[Any, ...] = ()


async def owned_for_turn(
    session: AsyncSession, caller: AuthContext | DeferredLogin, session_id: str, limit: int
) -> TurnRows:
    """The caller's session and what its turn reads before the model call, in one query; for a
    login whose check was deferred, that query reads its user row and revocation too (the login
    fails as `current_auth` would, before the session's 404)."""
    deferred = isinstance(caller, DeferredLogin)
    rows = []
    if len(session_id) <= 64:
        params = {"session_id": session_id, "limit": limit}
        if deferred:
            rows = (await session.execute(_TURN_OF_LOGIN, {**params, **caller.params})).all()
        else:
            rows = (await session.execute(_TURN, {**params, "owner_user_id": caller.user.id})).all()
    if deferred:
        caller = caller.complete(session, rows[0][8], rows[0][9]) if rows else await caller.resolve(session)
    if not rows:
        raise GenaiError(404, "playground_session_not_found", "Playground session not found")
    first = rows[0]
    spec = first[7] if first[0].assistant_ref.startswith("agent.") else None
    return TurnRows(
        caller.user,
        first[0],
        [r[1] for r in rows if r[1] is not None],
        (first[2], first[3], first[4]),
        (spec or {}).get("instructions") if isinstance(spec, dict) else None,
        (first[5], first[6]),
    )


async def list_sessions(session: AsyncSession, user: User, kind: str | None) -> list[PlaygroundSession]:
    stmt = select(PlaygroundSession).where(PlaygroundSession.owner_user_id == user.id)
    if kind is not None:
        stmt = stmt.where(PlaygroundSession.playground_kind == parse_kind(kind))
    stmt = stmt.order_by(PlaygroundSession.updated_at.desc()).limit(MAX_SESSIONS_LISTED)
    return list((await session.execute(stmt)).scalars())


# Built once (each finished turn runs both): building a statement and its cache key per call costs
# about as much CPU as running it on SQLite.
_MESSAGES = (
    select(PlaygroundMessage)
    .where(PlaygroundMessage.session_id == bindparam("session_id"))
    .order_by(PlaygroundMessage.message_index.desc())
    .limit(bindparam("limit"))
)
_LOCKED = select(PlaygroundSession).where(PlaygroundSession.id == bindparam("session_id")).with_for_update()


async def messages_of(
    session: AsyncSession, session_id: str, limit: int = MAX_MESSAGES_SHOWN
) -> list[PlaygroundMessage]:
    rows = (await session.execute(_MESSAGES, {"session_id": session_id, "limit": limit})).scalars()
    return list(reversed(list(rows)))


async def locked(session: AsyncSession, session_id: str) -> PlaygroundSession | None:
    """The session row under its lock (any owner: the caller has checked ownership), or None."""
    return (await session.execute(_LOCKED, {"session_id": session_id})).scalar_one_or_none()


async def update_session(session: AsyncSession, user: User, session_id: str, body: dict[str, Any]) -> PlaygroundSession:
    row = await owned(session, user, session_id)
    if "title" in body:
        row.title, row.title_source = _title(body["title"]), "manual"
    if "assistant_ref" in body:
        row.assistant_ref = _assistant(row.playground_kind, body["assistant_ref"])
    if "model_selection" in body:
        row.model_id = _model_id(body)
    if "knowledge_binding" in body:
        if row.playground_kind != "knowledge":
            raise GenaiError(400, "invalid_knowledge_binding", "Only knowledge sessions bind a knowledge base")
        row.knowledge_base_id, row.retrieval_json = parse_knowledge_binding(body["knowledge_binding"])
    row.updated_at = utcnow()
    await session.flush()
    return row


async def delete_session(session: AsyncSession, user: User, session_id: str) -> None:
    row = await owned(session, user, session_id)
    await session.execute(delete(PlaygroundMessage).where(PlaygroundMessage.session_id == row.id))
    await session.delete(row)
    await session.flush()


async def append(
    session: AsyncSession, row: PlaygroundSession, items: list[tuple[str, str, dict[str, Any]]]
) -> list[PlaygroundMessage]:
    """Append messages at the next indexes (the caller holds the session row's lock).

    Messages are only ever appended here and deleted with their session, so the session's
    message_count is the next index: no max() query, and the title and count go out in one UPDATE."""
    start = row.message_count
    out = []
    for offset, (role, content, metadata) in enumerate(items):
        message = PlaygroundMessage(
            session_id=row.id, message_index=start + offset, role=role, content=content, metadata_json=metadata
        )
        session.add(message)
        out.append(message)
    row.message_count = start + len(items)
    row.updated_at = utcnow()
    await session.flush()
    return out


# --- options -------------------------------------------------------------------------------------


async def model_options(session: AsyncSession, user: User) -> list[dict[str, Any]]:
    llm = (await active_bindings(session)).get(families.LLM)
    if llm is None:
        return []
    ids = [r.resource_id for r in llm[2]]
    if not ids:
        return []
    models = (await session.execute(select(GenaiModel).where(GenaiModel.model_id.in_(ids)))).scalars()
    shared = await shared_model_ids(session, user) if user.role != "superadmin" else set()
    out = []
    for m in models:
        visible = (
            user.role == "superadmin"
            or m.owner_user_id == user.id
            or m.visibility_scope == "platform"
            or m.model_id in shared
        )
        ready = m.lifecycle_state == "active" and m.is_validation_current and m.last_validation_status == "success"
        if visible and ready:
            out.append({"id": m.model_id, "display_name": m.name, "task_key": m.task_key})
    order = {mid: i for i, mid in enumerate(ids)}
    return sorted(out, key=lambda item: order[item["id"]])


def kb_bound(binding: Any, kb: KnowledgeBase) -> bool:
    """A KB is bound when it is an explicit resource of the vector binding, or its index falls in the
    binding's dynamic namespace; the binding's provider must back the KB either way."""
    row, provider, resources = binding
    if provider.id != kb.backing_provider_instance_id:
        return False
    if any(r.knowledge_base_id == kb.id for r in resources):
        return True
    policy = row.resource_policy or {}
    prefix = str(policy.get("namespace_prefix") or "")
    return policy.get("selection_mode") == "dynamic_namespace" and bool(prefix) and kb.index_name.startswith(prefix)


async def bound_knowledge_bases(session: AsyncSession) -> tuple[list[KnowledgeBase], str | None]:
    """Active+ready KBs bound in the active deployment, and the binding's default KB id."""
    vector = (await active_bindings(session)).get(families.VECTOR_STORE)
    if vector is None:
        return [], None
    kbs = (
        await session.execute(
            select(KnowledgeBase)
            .where(KnowledgeBase.lifecycle_state == "active", KnowledgeBase.sync_status == "ready")
            .order_by(KnowledgeBase.display_name)
        )
    ).scalars()
    bound = [kb for kb in kbs if kb_bound(vector, kb)]
    default = next((r.knowledge_base_id for r in vector[2] if r.is_default and r.knowledge_base_id), None)
    return bound, default if any(kb.id == default for kb in bound) else (bound[0].id if bound else None)


async def knowledge_base_options(session: AsyncSession) -> dict[str, Any]:
    bound, default = await bound_knowledge_bases(session)
    message = None if bound else "No active and ready knowledge base is bound in the active deployment"
    return {
        "knowledge_bases": [
            {
                "id": kb.id,
                "display_name": kb.display_name,
                "slug": kb.slug,
                "index_name": kb.index_name,
                "is_default": kb.id == default,
            }
            for kb in bound
        ],
        "default_knowledge_base_id": default,
        "selection_required": len(bound) > 1,
        "configuration_message": message,
    }


def assistants_for(kind: str | None) -> list[dict[str, Any]]:
    return [dict(a) for a in ASSISTANTS if kind is None or a["playground_kind"] == kind]
