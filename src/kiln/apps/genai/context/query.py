"""The KB retrieval test (`POST /v1/context/knowledge-bases/{id}/query`) through the active bindings:
the active deployment's vector store must be the KB's backing provider, and for semantic and
hybrid search its embeddings binding must serve the very model the KB was embedded with (the
model and its dimension are pinned on the KB and checked again on every embedding)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context import retrieval
from kiln.apps.genai.context import runtime as rt
from kiln.apps.genai.context.ingest import IngestError, Runtime, physical_index
from kiln.apps.genai.context.models import KnowledgeBase
from kiln.apps.genai.context.schema import normalize_metadata
from kiln.apps.genai.context.sync import ensure_embedded_index
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.deployments import ActiveBindings, active_bindings
from kiln.providers.embeddings import EmbeddingsError
from kiln.providers.http import ProviderError
from kiln.providers.vectors import VectorStoreError

METHODS = ("semantic", "keyword", "hybrid")
FUSIONS = ("rrf", "weighted")
MAX_TOP_K = 100
MAX_QUERY_CHARS = 4000


def parse_query(kb: KnowledgeBase, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GenaiError(400, "invalid_payload", "Body must be an object")
    text = body.get("query_text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_QUERY_CHARS:
        raise GenaiError(400, "invalid_query_text", f"query_text is required (at most {MAX_QUERY_CHARS} characters)")
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise GenaiError(400, "invalid_top_k", f"top_k must be an integer 1..{MAX_TOP_K}")
    method = body.get("search_method", "semantic")
    if method not in METHODS:
        raise GenaiError(400, "invalid_search_method", f"search_method must be one of {', '.join(METHODS)}")
    preprocessing = body.get("query_preprocessing", "none")
    if preprocessing not in ("none", "normalize"):
        raise GenaiError(400, "invalid_query_preprocessing", "query_preprocessing must be none or normalize")
    alpha = body.get("hybrid_alpha", 0.5)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise GenaiError(400, "invalid_hybrid_alpha", "hybrid_alpha must be a number in 0..1")
    fusion = body.get("hybrid_fusion") or ("weighted" if "hybrid_alpha" in body else "rrf")
    if fusion not in FUSIONS:
        raise GenaiError(400, "invalid_hybrid_fusion", "hybrid_fusion must be rrf or weighted")
    threshold = body.get("score_threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or isinstance(threshold, bool)):
        raise GenaiError(400, "invalid_score_threshold", "score_threshold must be a number")
    filters = normalize_metadata(kb.schema_json, body.get("filters"), field="filters")
    if preprocessing == "normalize":
        text = retrieval.normalize_query(text) or text
    return {
        "text": text,
        "top_k": top_k,
        "method": method,
        "preprocessing": preprocessing,
        "alpha": float(alpha),
        "fusion": fusion,
        "threshold": threshold,
        "filters": filters or None,
    }


def prefetch_query_vector(kb: KnowledgeBase, body: Any) -> None:
    """Start the query's embedding in a worker thread when the KB was embedded with the local
    encoder's model, so that it runs while the caller's statements and checks do (knowledge chat:
    the bindings read and checked before `run_query`). Nothing is decided here: `run_query` checks
    and parses everything as before and its embedding takes this run's vector only when the KB's
    embedder is that same encoder; otherwise (a check fails, another provider serving a model of
    that name) the vector stays unused in the encoder's query cache."""
    if (
        kb.lifecycle_state != "active"
        or kb.vectorization_mode == "self_provided"
        or kb.embedding_model != rt.LOCAL_MODEL_ID
    ):
        return
    try:
        params = parse_query(kb, body)
    except GenaiError:
        return
    if params["method"] != "keyword":
        rt.local_encoder().prefetch(params["text"])


async def check_bindings(
    session: AsyncSession, kb: KnowledgeBase, method: str, bindings: ActiveBindings | None = None
) -> None:
    """The KB against the active bindings (`bindings`: already read by the caller in this session)."""
    if bindings is None:
        bindings = await active_bindings(session)
    vector = bindings.get(families.VECTOR_STORE)
    if vector is None or vector[1].id != kb.backing_provider_instance_id:
        raise GenaiError(
            409,
            "knowledge_base_provider_mismatch",
            "The active deployment's vector store is not this knowledge base's backing provider",
        )
    policy = vector[0].resource_policy or {}
    if (
        policy.get("selection_mode", "explicit") == "explicit"
        and vector[2]
        and kb.id not in {r.knowledge_base_id for r in vector[2]}
    ):
        raise GenaiError(409, "knowledge_base_not_bound", "The active deployment does not bind this knowledge base")
    if policy.get("selection_mode") == "dynamic_namespace" and not kb.index_name.startswith(
        str(policy.get("namespace_prefix") or "")
    ):
        raise GenaiError(409, "knowledge_base_not_bound", "The knowledge base is outside the binding's namespace")
    if method == "keyword":
        return
    embeddings = bindings.get(families.EMBEDDINGS)
    if embeddings is None or embeddings[1].id != kb.embedding_provider_instance_id:
        raise GenaiError(
            409,
            "knowledge_base_embeddings_provider_mismatch",
            "The active embeddings provider is not the one this knowledge base was embedded with",
        )
    default = next((r for r in embeddings[2] if r.is_default), None)
    served = (
        (default.provider_resource_id or default.resource_id)
        if default
        else (
            rt.embedding_candidates(embeddings[1])[0]["id"]
            if embeddings[1].provider_key == rt.LOCAL_EMBEDDINGS
            else None
        )
    )
    if served != kb.embedding_resource_id and (default is None or default.resource_id != kb.embedding_resource_id):
        raise GenaiError(
            409,
            "knowledge_base_embeddings_resource_mismatch",
            "The active embeddings model is not the one this knowledge base was embedded with",
            {"knowledge_base_model": kb.embedding_resource_id, "active_model": served},
        )


async def _search_live(
    session: AsyncSession, kb: KnowledgeBase, runtime: Runtime | None, params: dict[str, Any]
) -> list[tuple[retrieval.Hit, Any]]:
    """The search, run again when a blue/green swap landed while it ran (the generation it read
    may have been dropped under it). The statement that resolves the hits' rows also reads the
    KB's live generation; the KB row is read again only when that differs or nothing was resolved."""
    found: retrieval.Retrieved | None = None
    for attempt in range(2):
        generation = kb.generation
        try:
            found = await retrieval.search(
                session,
                kb,
                runtime,
                params["text"],
                top_k=params["top_k"],
                method=params["method"],
                filters=params["filters"],
                fusion=params["fusion"],
                alpha=params["alpha"],
                score_threshold=params["threshold"],
            )
        except VectorStoreError as exc:
            if exc.code != "vector_index_not_found" or attempt:
                raise
            found = None
        if found is not None and found.live_generation == generation:
            return found.results
        await session.refresh(kb)
        if kb.generation == generation and found is not None:
            return found.results
    return found.results if found is not None else []


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


async def run_query(
    session: AsyncSession, kernel: Any, kb: KnowledgeBase, body: Any, *, bindings: ActiveBindings | None = None
) -> dict[str, Any]:
    """The query's results; `bindings` are the active bindings when the caller has read them already
    in this session (knowledge chat checks the KB's binding first), else they are read here."""
    params = parse_query(kb, body)
    if kb.lifecycle_state != "active":
        raise GenaiError(409, "knowledge_base_not_active", "The knowledge base is archived")
    if kb.vectorization_mode == "self_provided":
        raise GenaiError(409, "knowledge_base_self_provided", "Self-provided knowledge bases take no text queries")
    await check_bindings(session, kb, params["method"], bindings)
    runtime = None
    try:
        if params["method"] != "keyword":
            runtime = await Runtime.of(session, kernel, kb)
            await ensure_embedded_index(session, kernel, kb)
        found = await _search_live(session, kb, runtime, params)
    except IngestError as exc:
        raise GenaiError(409, exc.code, exc.message) from exc
    except (EmbeddingsError, ProviderError) as exc:
        raise GenaiError(502, "embeddings_provider_error", getattr(exc, "message", str(exc))) from exc
    except VectorStoreError as exc:
        raise GenaiError(502, exc.code, exc.message) from exc
    finally:
        if runtime is not None:
            await runtime.close()
    retrieval_info: dict[str, Any] = {
        "index": physical_index(kb),
        "result_count": len(found),
        "top_k": params["top_k"],
        "search_method": params["method"],
        "query_preprocessing": params["preprocessing"],
    }
    if params["method"] == "hybrid":
        retrieval_info.update({"hybrid_alpha": params["alpha"], "hybrid_fusion": params["fusion"]})
    results = []
    for hit, row in found:
        item = {
            "id": row.id,
            "document_id": row.document_id,
            "chunk_index": row.chunk_index,
            "title": row.title,
            "text": _collapse(row.text),
            "uri": row.uri,
            "source_type": row.source_type,
            "metadata": {
                **(row.metadata_json or {}),
                "document_id": row.document_id,
                "chunk_index": row.chunk_index,
                **({"page_number": row.page_number} if row.page_number is not None else {}),
            },
            "chunk_length_tokens": row.token_count,
            "relevance_score": round(hit.score, 6),
            "relevance_kind": {"semantic": "similarity", "keyword": "keyword_score"}.get(
                params["method"], "rrf" if params["fusion"] == "rrf" else "weighted"
            ),
        }
        if params["method"] == "hybrid":
            item["relevance_components"] = {
                "semantic_score": hit.components.get("semantic_score"),
                "keyword_score": hit.components.get("keyword_score"),
            }
        results.append(item)
    return {"knowledge_base_id": kb.id, "retrieval": retrieval_info, "results": results}
