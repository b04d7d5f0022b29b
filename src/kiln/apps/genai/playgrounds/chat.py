"""One playground turn: prepare (model checks, history, knowledge retrieval, prompt), then either
answer at once or (`relay.py`) relay the model's tokens as Server-Sent Events; `finish` builds the
answer payload and persists the turn in its own database session (the request's is gone by then).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.inference import Target
from kiln.apps.genai.modelops.inference import prepare as prepare_model
from kiln.apps.genai.modelops.usage import buffer_of
from kiln.apps.genai.playgrounds import knowledge
from kiln.apps.genai.playgrounds import service as svc
from kiln.apps.genai.playgrounds.models import PlaygroundMessage
from kiln.apps.genai.registry.service import current_version
from kiln.core.auth import User
from kiln.providers.http import ProviderError
from kiln.providers.llm import LLMClient

HISTORY_MESSAGES = 14
HISTORY_CHARS = 8000
MAX_PROMPT_CHARS = 20000
TITLE_CHARS = 64


@dataclass
class Turn:
    kernel: Any
    user_id: str
    kind: str
    model_id: str
    provider_slug: str
    llm: LLMClient
    runtime_model: str
    prompt: str
    messages: list[dict[str, Any]]
    session_id: str | None  # None: a temporary turn, nothing is persisted
    knowledge: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)


def parse_prompt(body: Any) -> str:
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT_CHARS:
        raise GenaiError(400, "invalid_prompt", f"prompt is required (at most {MAX_PROMPT_CHARS} characters)")
    return prompt


def trim_history(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last messages within the history budget (count and characters), oldest first."""
    out: list[dict[str, Any]] = []
    used = 0
    for item in reversed(items[-HISTORY_MESSAGES:]):
        used += len(item["content"])
        if used > HISTORY_CHARS:
            break
        out.append(item)
    return list(reversed(out))


def previous_queries(items: list[dict[str, Any]]) -> list[str]:
    """The retrieval queries of earlier turns (an assistant's recorded query, else the user's text)."""
    out: list[str] = []
    for item in items:
        recorded = ((item.get("metadata") or {}).get("retrieval") or {}).get("query")
        if item["role"] == "assistant" and recorded:
            if out:
                out[-1] = recorded
        elif item["role"] == "user":
            out.append(item["content"])
    return out


async def _instructions(session: AsyncSession, assistant_ref: str) -> str | None:
    version = await current_version(session, assistant_ref) if assistant_ref.startswith("agent.") else None
    return (version.spec or {}).get("instructions") if version is not None else None


async def prepare(
    session: AsyncSession,
    kernel: Any,
    user: User,
    *,
    kind: str,
    model_id: str | None,
    kb_id: str | None,
    retrieval: dict[str, Any],
    history: list[dict[str, Any]],
    prompt: str,
    session_id: str | None,
    instructions: str | None,
    model_target: Target | None = None,
) -> Turn:
    """`model_target`: the model's columns if the caller's query read them (a session turn);
    `instructions`: the assistant's, read by the caller."""
    if not model_id:
        raise GenaiError(400, "model_required", "Select a model (model_selection.model_id) first")
    query = ""
    if kind == "knowledge":
        query = knowledge.rewrite_query(prompt, previous_queries(history))
        await knowledge.prefetch(session, kb_id, retrieval, query)  # the encoder runs beside the checks
    model, provider, llm, runtime = await prepare_model(session, kernel, user, model_id, found=model_target)
    context = [{"role": m["role"], "content": m["content"]} for m in trim_history(history)]
    messages: list[dict[str, Any]] = []
    found = None
    if kind == "knowledge":
        found = await knowledge.retrieve(session, kernel, kb_id, retrieval, query)
        messages.append({"role": "system", "content": knowledge.system_prompt(instructions, found["sources"])})
    elif instructions is not None:
        messages.append({"role": "system", "content": instructions})
    messages += context + [{"role": "user", "content": prompt}]
    return Turn(
        kernel=kernel,
        user_id=user.id,
        kind=kind,
        model_id=model.model_id,
        provider_slug=provider.slug,
        llm=llm,
        runtime_model=runtime,
        prompt=prompt,
        messages=messages,
        session_id=session_id,
        knowledge=found,
    )


async def prepare_for_session(session: AsyncSession, kernel: Any, read: svc.TurnRows, prompt: str) -> Turn:
    """The turn of the session `svc.owned_for_turn` read (with `HISTORY_MESSAGES`)."""
    row = read.session
    user = read.user
    history = [{"role": m.role, "content": m.content, "metadata": m.metadata_json or {}} for m in read.messages]
    return await prepare(
        session,
        kernel,
        user,
        kind=row.playground_kind,
        model_id=row.model_id,
        kb_id=row.knowledge_base_id,
        retrieval=row.retrieval_json or {},
        history=history,
        prompt=prompt,
        session_id=row.id,
        instructions=read.instructions,
        model_target=read.target,
    )


async def prepare_temporary(session: AsyncSession, kernel: Any, user: User, body: dict[str, Any]) -> Turn:
    """A turn that is not persisted: the client sends the kind, model, KB and its own history."""
    kind = svc.parse_kind(body.get("playground_kind"), "chat")
    kb_id, retrieval = svc.parse_knowledge_binding(body.get("knowledge_binding"))
    raw = body.get("messages") or body.get("history") or []
    if not isinstance(raw, list) or len(raw) > 200:
        raise GenaiError(400, "invalid_history", "messages must be a list of at most 200 items")
    history = []
    for item in raw:
        if (
            not isinstance(item, dict)
            or item.get("role") not in ("user", "assistant")
            or not isinstance(item.get("content"), str)
            or len(item["content"]) > MAX_PROMPT_CHARS
        ):
            raise GenaiError(400, "invalid_history", "each message needs role user|assistant and text content")
        history.append({"role": item["role"], "content": item["content"], "metadata": {}})
    model_id = (
        (body.get("model_selection") or {}).get("model_id") if isinstance(body.get("model_selection"), dict) else None
    )
    assistant_ref = svc._assistant(kind, body.get("assistant_ref"))
    prompt = parse_prompt(body)
    return await prepare(
        session,
        kernel,
        user,
        kind=kind,
        model_id=model_id,
        kb_id=kb_id,
        retrieval=retrieval,
        history=history,
        prompt=prompt,
        session_id=None,
        instructions=await _instructions(session, assistant_ref),
    )


async def finish(
    turn: Turn,
    text: str,
    *,
    incomplete: bool = False,
    error: str | None = None,
    usage: dict[str, Any] | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """The turn's answer payload; for a session turn the user and assistant messages are persisted."""
    buffer_of(turn.kernel).add(turn.model_id, turn.user_id, (time.perf_counter() - turn.started) * 1000, usage or {})
    sources: list[dict[str, Any]] = []
    references: list[dict[str, Any]] = []
    retrieval = None
    if turn.knowledge is not None:
        text, sources, references = knowledge.cite(text, turn.knowledge["sources"])
        retrieval = turn.knowledge["retrieval"]
    metadata: dict[str, Any] = {"model_id": turn.model_id}
    if turn.knowledge is not None:
        metadata.update(
            {
                "sources": sources,
                "references": references,
                "retrieval": retrieval,
                "knowledge_base_id": turn.knowledge["knowledge_base_id"],
            }
        )
    if incomplete:
        metadata["incomplete"] = True
    if error:
        metadata["error"] = error
    response = {
        "model": turn.model_id,
        "finish_reason": finish_reason,
        "usage": usage or {},
        "output": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
    }
    out: dict[str, Any] = {
        "output": text,
        "response": response,
        "sources": sources,
        "references": references,
        "retrieval": retrieval,
    }
    if turn.session_id is None:
        out["messages"] = [
            {"role": "user", "content": turn.prompt, "metadata": {}},
            {"role": "assistant", "content": text, "metadata": metadata},
        ]
        return out
    async with turn.kernel.db.session() as session:
        row = await svc.locked(session, turn.session_id)
        if row is None:  # deleted while the model answered
            out.update(session=None, messages=[])
            return out
        if row.title_source == "auto" and row.message_count == 0:
            row.title = " ".join(turn.prompt.split())[:TITLE_CHARS] or row.title
        added = await svc.append(session, row, [("user", turn.prompt, {}), ("assistant", text, metadata)])
        await session.commit()
        messages: list[PlaygroundMessage] = await svc.messages_of(session, row.id)
        out.update(session=svc.session_dto(row, messages), messages=[svc.message_dto(m) for m in added])
    return out


async def answer(turn: Turn) -> dict[str, Any]:
    try:
        result = await turn.llm.chat(turn.messages, model=turn.runtime_model)
    except ProviderError as exc:
        raise GenaiError(502, "llm_unreachable", f"LLM provider {turn.provider_slug} failed: {exc.message}") from None
    return await finish(turn, result.content, usage=result.usage, finish_reason=result.finish_reason)
