"""Knowledge chat: retrieval through part 2's query path, a history-aware query, the prompt with
numbered references, and citations kept only for references the answer really cites.

Checked at request time (§7.3-9): the KB must be bound in the active deployment's vector binding
and be active+ready; the retrieval itself re-checks that the active vector provider backs the KB
and that the active embeddings binding serves the model (and dimension) the KB was embedded with.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.models import KnowledgeBase
from kiln.apps.genai.context.query import prefetch_query_vector, run_query
from kiln.apps.genai.context.retrieval import WORD_RE, query_terms
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import active_bindings
from kiln.apps.genai.playgrounds.service import kb_bound

DEFAULT_TOP_K = 5
SNIPPET_CHARS = 220
REFERENCE_CHARS = 2000
# Words that point back at an earlier turn: a prompt using them is retrieved with that turn's subject.
ANAPHORA = frozenset(
    (
        "it",
        "its",
        "they",
        "them",
        "their",
        "theirs",
        "this",
        "that",
        "these",
        "those",
        "he",
        "him",
        "his",
        "she",
        "her",
        "hers",
        "there",
        "one",
        "ones",
        "former",
        "latter",
        "same",
        "such",
    )
)
FOLLOW_UP_OPENERS = ("and ", "what about", "how about", "also ", "but ", "then ", "why ", "how come")
CITATION = re.compile(r"\[(\d{1,3})\]")
INSTRUCTIONS = (
    "Answer the question using the numbered references below. Cite a reference as [n] right after "
    "the statement it supports, and cite only references you actually used. If the references do not "
    "contain the answer, say so and do not cite anything."
)


def rewrite_query(prompt: str, previous_queries: list[str]) -> str:
    """The retrieval query for `prompt`: a follow-up ("and what about its price?") is joined with the
    query of the previous turn, so it retrieves with that turn's subject; a self-contained prompt is
    used as it is."""
    if not previous_queries:
        return prompt
    lowered = prompt.lower().strip()
    words = WORD_RE.findall(lowered)
    follow_up = (
        any(w in ANAPHORA for w in words) or lowered.startswith(FOLLOW_UP_OPENERS) or len(query_terms(prompt)) <= 1
    )
    if not follow_up:
        return prompt
    return f"{previous_queries[-1]} {prompt}"[-4000:]


def query_body(settings: dict[str, Any], query: str) -> dict[str, Any]:
    """The KB query (`run_query`'s body) of a knowledge session's retrieval settings."""
    body: dict[str, Any] = {
        "query_text": query,
        "top_k": settings.get("top_k", DEFAULT_TOP_K),
        "search_method": settings.get("search_method", "semantic"),
    }
    if settings.get("filters"):
        body["filters"] = settings["filters"]
    if body["search_method"] == "hybrid" and "hybrid_alpha" in settings:
        body["hybrid_alpha"] = settings["hybrid_alpha"]
    return body


async def prefetch(session: AsyncSession, kb_id: str | None, settings: dict[str, Any], query: str) -> None:
    """Start the query's embedding (`query.prefetch_query_vector`) before the turn's model checks
    and the KB's binding checks, so that the encoder runs beside them. Decides and raises nothing:
    `retrieve` checks everything as before. A session turn's own statement has read the KB (no
    statement here)."""
    kb = await session.get(KnowledgeBase, kb_id) if kb_id and len(kb_id) <= 64 else None
    if kb is not None and kb.sync_status == "ready":
        prefetch_query_vector(kb, query_body(settings, query))


async def retrieve(
    session: AsyncSession, kernel: Any, kb_id: str | None, settings: dict[str, Any], query: str
) -> dict[str, Any]:
    if not kb_id:
        raise GenaiError(400, "knowledge_base_required", "Knowledge sessions need knowledge_binding.knowledge_base_id")
    kb = await session.get(KnowledgeBase, kb_id) if len(kb_id) <= 64 else None
    if kb is None:
        raise GenaiError(404, "knowledge_base_not_found", "Knowledge base not found")
    body = query_body(settings, query)
    bindings = await active_bindings(session)  # read once: the query path checks the same bindings
    vector = bindings.get(families.VECTOR_STORE)
    if vector is None or not kb_bound(vector, kb):
        raise GenaiError(
            409,
            "knowledge_base_not_bound",
            "The knowledge base is not bound in the active deployment",
            {"knowledge_base_id": kb.id},
        )
    if kb.lifecycle_state != "active" or kb.sync_status != "ready":
        raise GenaiError(
            409,
            "knowledge_base_not_configured",
            "The knowledge base is not active and ready",
            {"lifecycle_state": kb.lifecycle_state, "sync_status": kb.sync_status},
        )
    found = await run_query(session, kernel, kb, body, bindings=bindings)
    sources = []
    for n, item in enumerate(found["results"], 1):
        sources.append(
            {
                "citation_label": f"[{n}]",
                "reference_number": n,
                "id": item["id"],
                "chunk_id": item["id"],
                "chunk_index": item["chunk_index"],
                "document_id": item["document_id"],
                "title": item["title"],
                "uri": item["uri"],
                "source_type": item["source_type"],
                "score": item["relevance_score"],
                "relevance_kind": item["relevance_kind"],
                "snippet": item["text"][:SNIPPET_CHARS],
                "metadata": item["metadata"],
                "_text": item["text"],
            }
        )
    retrieval = {**found["retrieval"], "query": query, "knowledge_base_id": kb.id}
    return {"knowledge_base_id": kb.id, "sources": sources, "retrieval": retrieval}


def system_prompt(instructions: str | None, sources: list[dict[str, Any]]) -> str:
    blocks = [f"[{s['reference_number']}] {s['title']}\n{s['_text'][:REFERENCE_CHARS]}" for s in sources]
    refs = "\n\n".join(blocks) if blocks else "(no references were found)"
    head = f"{instructions.strip()}\n\n" if instructions else ""
    return f"{head}{INSTRUCTIONS}\n\nReferences:\n{refs}"


def cite(answer: str, sources: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The answer without markers that name no reference, the sources (each flagged `cited`), and
    the references: only the sources the answer cites, in order of first citation. Nothing is added
    when the answer cites nothing."""
    valid = {s["reference_number"] for s in sources}
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in valid:
            return ""
        if n not in cited:
            cited.append(n)
        return match.group(0)

    cleaned = CITATION.sub(keep, answer)
    public = [{k: v for k, v in s.items() if k != "_text"} | {"cited": s["reference_number"] in cited} for s in sources]
    by_number = {s["reference_number"]: s for s in public}
    return cleaned, public, [by_number[n] for n in cited]
