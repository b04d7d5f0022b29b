"""Retrieval over a knowledge base: semantic (vector store), keyword (the database's full-text
index over the persisted chunks: SQLite FTS5 bm25, PostgreSQL ts_rank_cd) and hybrid (reciprocal
rank fusion, or a weighted sum of min-max-normalised branch scores). Results carry the document,
chunk, score and text; every hit is checked against the live chunk rows, so a document being
replaced or deleted never shows half of itself."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.ingest import Runtime, embed_checked, physical_index
from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase

RRF_K = 60
MAX_TERMS = 32
WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = """a an and are as at be by can could did do does for from had has have how i in into is it its me my not of
on or our so than that the their them then there these they this to was we were what when where which who whom why
will with would you your"""
STOPWORDS = frozenset(_STOP.split())


@dataclass
class Hit:
    chunk_id: str
    score: float
    components: dict[str, float] = field(default_factory=dict)


def normalize_query(query: str) -> str:
    """NFKD, no diacritics, lower case, non-alphanumerics to spaces, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", query)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^0-9a-z]+", " ", stripped).split())


def query_terms(query: str) -> list[str]:
    seen: list[str] = []
    for word in WORD_RE.findall(query.lower()):
        if word not in STOPWORDS and word not in seen and len(word) <= 64:
            seen.append(word)
    return seen[:MAX_TERMS]


async def allowed_chunk_ids(
    session: AsyncSession, kb: KnowledgeBase, filters: dict[str, Any] | None
) -> list[str] | None:
    """Chunk ids of the live generation whose document matches every filter (None: no filter)."""
    if not filters:
        return None
    doc_ids = [
        row.id
        for row in (
            await session.execute(
                select(Document.id, Document.metadata_json).where(Document.knowledge_base_id == kb.id)
            )
        ).all()
        if all((row.metadata_json or {}).get(key) == value for key, value in filters.items())
    ]
    if not doc_ids:
        return []
    return list(
        (
            await session.execute(
                select(Chunk.id).where(Chunk.document_id.in_(doc_ids), Chunk.generation == kb.generation)
            )
        ).scalars()
    )


async def semantic(
    session: AsyncSession,
    kb: KnowledgeBase,
    runtime: Runtime,
    query: str,
    limit: int,
    filters: dict[str, Any] | None,
    allowed: list[str] | None,
) -> list[Hit]:
    vector = (await embed_checked(runtime.embedder, [query], kb.embedding_dimension))[0]
    if allowed is not None and not allowed:
        return []
    found = await runtime.store.query(physical_index(kb), vector, limit, filters=filters, allowed_ids=allowed)
    return [Hit(hit.id, float(hit.score), {"semantic_score": float(hit.score)}) for hit in found]


async def keyword(
    session: AsyncSession, kb: KnowledgeBase, query: str, limit: int, allowed: list[str] | None
) -> list[Hit]:
    """All-terms match first (fast: the index intersects the terms' posting lists); only when no
    chunk holds every term, any-term match ranked by bm25 (slow on common terms: it scores every
    chunk holding any of them)."""
    terms = query_terms(query)
    if not terms or (allowed is not None and not allowed):
        return []
    hits = await _keyword(session, kb, terms, limit, allowed, every=True)
    if not hits and len(terms) > 1:
        hits = await _keyword(session, kb, terms, limit, allowed, every=False)
    return hits


# Both rank with bm25 weighted 1 on the text and 0 on the kb column, best first. All terms match
# few chunks: bm25() in the statement is cheapest there. Any term can match thousands: there the
# same bm25 as FTS5's own `rank` (set per query by `rank MATCH`) is computed once per row and
# sorted inside FTS5, instead of twice per row and sorted by SQLite (any-term query at 100,000
# chunks: 19.3 → 8.0 ms CPU, the same rows in the same order).
_FTS_FROM = (
    "FROM genai_context_chunks_fts JOIN genai_context_chunks c ON c.fts_rowid = genai_context_chunks_fts.rowid "
    "WHERE genai_context_chunks_fts MATCH :q AND +c.knowledge_base_id = :kb AND +c.generation = :gen "
)
_FTS_ALL_TERMS = (
    "SELECT c.id, -bm25(genai_context_chunks_fts, 1.0, 0.0) AS score "
    + _FTS_FROM
    + "ORDER BY bm25(genai_context_chunks_fts, 1.0, 0.0) LIMIT :limit"
)
_FTS_ANY_TERM = (
    "SELECT c.id, -genai_context_chunks_fts.rank AS score "
    + _FTS_FROM
    + "AND genai_context_chunks_fts.rank MATCH 'bm25(1.0, 0.0)' ORDER BY genai_context_chunks_fts.rank LIMIT :limit"
)


async def _keyword(
    session: AsyncSession, kb: KnowledgeBase, terms: list[str], limit: int, allowed: list[str] | None, every: bool
) -> list[Hit]:
    params: dict[str, Any] = {"kb": kb.id, "gen": kb.generation, "limit": limit if allowed is None else 10_000}
    if session.bind.dialect.name == "postgresql":
        params["q"] = (" & " if every else " | ").join(terms)
        sql = (
            "SELECT c.id, ts_rank_cd(c.tsv, q) AS score FROM genai_context_chunks c, "
            "to_tsquery('english', :q) q WHERE c.tsv @@ q AND c.knowledge_base_id = :kb "
            "AND c.generation = :gen ORDER BY score DESC LIMIT :limit"
        )
    else:
        # The KB is checked on the joined chunk row, not with a `kb:` phrase in the MATCH: bm25 counts
        # every phrase's rows for its IDF, and the KB's phrase is in all of the KB's rows (2.8 of the
        # 3.3 ms CPU of an all-terms query at 100,000 chunks). That phrase had weight 0, so the scores
        # are the same. `+` keeps the planner driving from the MATCH, never from the (kb, generation)
        # index.
        quoted = [f'"{term}"' for term in terms]
        params["q"] = "text:(" + (" AND " if every else " OR ").join(quoted) + ")"
        sql = _FTS_ALL_TERMS if every else _FTS_ANY_TERM
    rows = (await session.execute(text(sql), params)).all()
    if allowed is not None:
        allowed_set = set(allowed)
        rows = [row for row in rows if row.id in allowed_set][:limit]
    return [Hit(row.id, float(row.score), {"keyword_score": float(row.score)}) for row in rows]


def _minmax(hits: list[Hit]) -> dict[str, float]:
    if not hits:
        return {}
    scores = [hit.score for hit in hits]
    low, high = min(scores), max(scores)
    return {hit.chunk_id: 1.0 if high == low else (hit.score - low) / (high - low) for hit in hits}


def fuse(semantic_hits: list[Hit], keyword_hits: list[Hit], *, fusion: str, alpha: float) -> list[Hit]:
    """Reciprocal rank fusion (1/(60+rank) per branch), or α·semantic + (1−α)·keyword with each
    branch min-max normalised over its candidates (a missing branch counts 0)."""
    fused: dict[str, Hit] = {}
    if fusion == "rrf":
        for hits in (semantic_hits, keyword_hits):
            for rank, hit in enumerate(hits, start=1):
                entry = fused.setdefault(hit.chunk_id, Hit(hit.chunk_id, 0.0, {}))
                entry.score += 1.0 / (RRF_K + rank)
                entry.components.update(hit.components)
    else:
        sem, key = _minmax(semantic_hits), _minmax(keyword_hits)
        for hit in semantic_hits + keyword_hits:
            entry = fused.setdefault(hit.chunk_id, Hit(hit.chunk_id, 0.0, {}))
            entry.components.update(hit.components)
        for chunk_id, entry in fused.items():
            entry.score = alpha * sem.get(chunk_id, 0.0) + (1 - alpha) * key.get(chunk_id, 0.0)
    return sorted(fused.values(), key=lambda hit: -hit.score)


@dataclass
class Retrieved:
    """The ranked results (each a hit and its chunk row: the chunk's and its document's columns a
    result shows), and the KB's generation as the statement that read those rows saw it (None when
    nothing was left to resolve): a blue/green swap that landed during the search shows here."""

    results: list[tuple[Hit, Row[Any]]]
    live_generation: int | None


async def search(
    session: AsyncSession,
    kb: KnowledgeBase,
    runtime: Runtime | None,
    query: str,
    *,
    top_k: int,
    method: str,
    filters: dict[str, Any] | None,
    fusion: str = "rrf",
    alpha: float = 0.5,
    score_threshold: float | None = None,
) -> Retrieved:
    allowed = await allowed_chunk_ids(session, kb, filters)
    if method == "semantic":
        hits = await semantic(session, kb, runtime, query, top_k, filters, allowed)  # type: ignore[arg-type]
    elif method == "keyword":
        hits = await keyword(session, kb, query, top_k, allowed)
    else:
        fetch = min(max(3 * top_k, 10), 50)
        hits = fuse(
            await semantic(session, kb, runtime, query, fetch, filters, allowed),  # type: ignore[arg-type]
            await keyword(session, kb, query, fetch, allowed),
            fusion=fusion,
            alpha=alpha,
        )
    if score_threshold is not None:
        hits = [hit for hit in hits if hit.score >= score_threshold]
    return await _resolve(session, kb, hits, top_k)


# What a result shows of its chunk and document: never the document's whole text or page texts,
# nor the chunk's vector (a hit's row was ~10 columns of ORM objects with them before).
_RESULT_COLUMNS = (
    Chunk.id,
    Chunk.knowledge_base_id,
    Chunk.generation,
    Chunk.chunk_index,
    Chunk.text,
    Chunk.page_number,
    Chunk.token_count,
    Document.id.label("document_id"),
    Document.title,
    Document.uri,
    Document.source_type,
    Document.metadata_json,
)


async def _resolve(session: AsyncSession, kb: KnowledgeBase, hits: list[Hit], top_k: int) -> Retrieved:
    if not hits:
        return Retrieved([], None)
    ids = [hit.chunk_id for hit in hits[: top_k * 2 + 10]]
    live = select(KnowledgeBase.generation).where(KnowledgeBase.id == kb.id).scalar_subquery()
    # By primary key only (a planner offered the (kb, generation) index would scan the whole KB);
    # the live generation is checked on the few rows found.
    rows = (
        await session.execute(
            select(*_RESULT_COLUMNS, live.label("live_generation"))
            .join(Document, Document.id == Chunk.document_id)
            .where(Chunk.id.in_(ids))
        )
    ).all()
    by_id = {row.id: row for row in rows if row.generation == kb.generation and row.knowledge_base_id == kb.id}
    results = [(hit, by_id[hit.chunk_id]) for hit in hits if hit.chunk_id in by_id][:top_k]
    return Retrieved(results, rows[0].live_generation if rows else None)
