"""Recommendations from local sentence embeddings (all-MiniLM-L6-v2 via `kiln.providers.embeddings`).

Each adapter's text (name, alias, tags, trigger words, activation text, caption tags, base
model; not the description, which is display-only) is embedded and stored as float32 bytes
with a hash of that text. Before ranking, the index syncs with the table: rows of changed
adapters are recomputed, deleted adapters' rows are gone (FK cascade), and the in-memory
matrix is rebuilt only when the table changed. Similar-adapter ranking excludes other base
models; feedback (positive/activated vs negative/dismissed) shifts an adapter's score.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.errors import not_found
from kiln.apps.lora.models import Adapter, Embedding, Feedback
from kiln.core.db import utcnow
from kiln.providers.embeddings import LocalSentenceEncoder

POSITIVE = ("positive", "activated")
NEGATIVE = ("negative", "dismissed", "ignored")
FEEDBACK_TYPES = POSITIVE + NEGATIVE
FEEDBACK_STEP, FEEDBACK_CAP = 0.05, 0.15


def adapter_text(a: Adapter) -> str:
    parts = [
        a.name,
        a.alias or "",
        ", ".join(a.tags or []),
        ", ".join(a.trained_words or []),
        ", ".join(a.triggers or []),
        a.activation_text or "",
        ", ".join((a.trigger_candidates or [])[:10]),
        a.sd_version or "",
    ]
    return " | ".join(p for p in parts if p)[:4000]


@dataclass
class Index:
    ids: list[str] = field(default_factory=list)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), dtype=np.float32))
    stamp: tuple[Any, ...] | None = None


@dataclass
class Engine:
    """Per-process state: the encoder, the cached index and measured timings."""

    encoder: Any = field(default_factory=LocalSentenceEncoder)
    index: Index = field(default_factory=Index)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requests: int = 0
    total_ms: float = 0.0
    index_hits: int = 0
    index_lookups: int = 0
    last_index_update: Any = None

    def record(self, started: float) -> float:
        elapsed = (time.perf_counter() - started) * 1000
        self.requests += 1
        self.total_ms += elapsed
        return round(elapsed, 2)


def _hash(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\n{text}".encode()).hexdigest()


async def compute(
    session: AsyncSession, engine: Engine, adapters: list[Adapter], *, force: bool = False, batch_size: int = 32
) -> dict[str, Any]:
    started = time.perf_counter()
    model = engine.encoder.model_id
    existing = {
        e.adapter_id: e
        for e in (
            await session.scalars(select(Embedding).where(Embedding.adapter_id.in_([a.id for a in adapters])))
        ).all()
    }
    todo = []
    for a in adapters:
        text = adapter_text(a)
        digest = _hash(model, text)
        row = existing.get(a.id)
        if force or row is None or row.source_hash != digest or row.model != model:
            todo.append((a, text, digest))
    errors: list[dict[str, str]] = []
    for start in range(0, len(todo), max(1, batch_size)):
        chunk = todo[start : start + batch_size]
        vectors = await engine.encoder.embed([text for _, text, _ in chunk])
        for (a, _, digest), vector in zip(chunk, vectors, strict=True):
            blob = np.asarray(vector, dtype="<f4").tobytes()
            row = existing.get(a.id)
            if row is None:
                session.add(
                    Embedding(
                        adapter_id=a.id,
                        model=model,
                        dim=len(vector),
                        vector=blob,
                        source_hash=digest,
                        computed_at=utcnow(),
                    )
                )
            else:
                row.model, row.dim, row.vector, row.source_hash, row.computed_at = (
                    model,
                    len(vector),
                    blob,
                    digest,
                    utcnow(),
                )
    await session.commit()
    return {
        "processed_count": len(todo),
        "skipped_count": len(adapters) - len(todo),
        "error_count": len(errors),
        "processing_time_seconds": round(time.perf_counter() - started, 3),
        "errors": errors,
        "completed_at": utcnow().isoformat(),
    }


async def _stamp(session: AsyncSession) -> tuple[Any, ...]:
    row = (await session.execute(select(func.count(), func.max(Adapter.updated_at)).select_from(Adapter))).one()
    emb = (await session.execute(select(func.count(), func.max(Embedding.computed_at)).select_from(Embedding))).one()
    return (*row, *emb)


async def ensure_index(session: AsyncSession, engine: Engine) -> Index:
    """Bring stored embeddings up to date with the adapters and return the in-memory index."""
    async with engine.lock:
        engine.index_lookups += 1
        stamp = await _stamp(session)
        if engine.index.stamp == stamp:
            engine.index_hits += 1
            return engine.index
        adapters = list((await session.scalars(select(Adapter))).all())
        await compute(session, engine, adapters)
        rows = (
            await session.execute(
                select(Embedding.adapter_id, Embedding.vector, Embedding.dim).where(
                    Embedding.model == engine.encoder.model_id
                )
            )
        ).all()
        ids = [r[0] for r in rows]
        matrix = (
            np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]).astype(np.float32)
            if rows
            else np.zeros((0, 384), dtype=np.float32)
        )
        engine.index = Index(ids=ids, matrix=matrix, stamp=await _stamp(session))
        engine.last_index_update = utcnow()
        return engine.index


async def _feedback_bonus(session: AsyncSession) -> dict[str, float]:
    rows = await session.execute(
        select(
            Feedback.adapter_id,
            func.sum(case((Feedback.feedback_type.in_(POSITIVE), 1), else_=0)),
            func.sum(case((Feedback.feedback_type.in_(NEGATIVE), 1), else_=0)),
        ).group_by(Feedback.adapter_id)
    )
    return {aid: max(-FEEDBACK_CAP, min(FEEDBACK_CAP, FEEDBACK_STEP * (int(p) - int(n)))) for aid, p, n in rows}


def _item(a: Adapter, similarity: float, final: float, explanation: str) -> dict[str, Any]:
    return {
        "lora_id": a.id,
        "lora_name": a.name,
        "lora_description": a.description,
        "similarity_score": round(similarity, 4),
        "final_score": round(final, 4),
        "explanation": explanation,
        "semantic_similarity": round(similarity, 4),
        "artistic_similarity": None,
        "technical_similarity": None,
        "quality_boost": 0.0,
        "popularity_boost": 0.0,
        "recency_boost": 0.0,
        "metadata": {
            "tags": list(a.tags or [])[:5],
            "author": a.author_username,
            "sd_version": a.sd_version,
            "nsfw_level": a.nsfw_level,
        },
    }


async def _rank(
    session: AsyncSession,
    index: Index,
    query: np.ndarray,
    exclude: set[str],
    limit: int,
    threshold: float,
    explain: Any,
) -> list[dict[str, Any]]:
    if not index.ids:
        return []
    scores = index.matrix @ query.astype(np.float32)
    bonus = await _feedback_bonus(session)
    order = np.argsort(-scores)[: max(limit * 5, 50)]
    chosen = [(index.ids[i], float(scores[i])) for i in order if index.ids[i] not in exclude and scores[i] >= threshold]
    adapters = {
        a.id: a for a in (await session.scalars(select(Adapter).where(Adapter.id.in_([c[0] for c in chosen])))).all()
    }
    items = []
    for aid, score in chosen:
        a = adapters.get(aid)
        if a is None:
            continue
        reason = explain(a)
        if reason is None:
            continue
        items.append(_item(a, score, score + bonus.get(aid, 0.0), reason))
    items.sort(key=lambda i: -i["final_score"])
    return items[:limit]


async def similar(
    session: AsyncSession, engine: Engine, lora_id: str, *, limit: int, threshold: float
) -> list[dict[str, Any]]:
    target = await session.get(Adapter, lora_id)
    if target is None:
        raise not_found("adapter")
    index = await ensure_index(session, engine)
    if lora_id not in index.ids:
        return []
    query = index.matrix[index.ids.index(lora_id)]

    def explain(a: Adapter) -> str | None:
        if a.sd_version and target.sd_version and a.sd_version != target.sd_version:
            return None
        shared = sorted({t.casefold() for t in a.tags or []} & {t.casefold() for t in target.tags or []})
        parts = [f"Shared tags: {', '.join(shared[:5])}"] if shared else []
        if a.sd_version and a.sd_version == target.sd_version:
            parts.append(f"Same SD version ({a.sd_version})")
        return " | ".join(parts) or "Similar metadata"

    return await _rank(session, index, query, {lora_id}, limit, threshold, explain)


async def for_prompt(
    session: AsyncSession, engine: Engine, prompt: str, *, exclude: list[str], limit: int
) -> list[dict[str, Any]]:
    index = await ensure_index(session, engine)
    (query,) = await engine.encoder.embed([prompt[:4000]])
    low = prompt.casefold()

    def explain(a: Adapter) -> str:
        words = [w for w in [*(a.trained_words or []), *(a.triggers or [])] if w and w.casefold() in low]
        parts = [f"Trigger words in prompt: {', '.join(words[:5])}"] if words else []
        if a.tags:
            parts.append(f"Tags: {', '.join(list(a.tags)[:3])}")
        return " | ".join(parts) or "Prompt similarity"

    return await _rank(session, index, query, set(exclude), limit, -1.0, explain)


async def embedding_status(session: AsyncSession, lora_id: str, model: str) -> dict[str, Any]:
    adapter = await session.get(Adapter, lora_id)
    if adapter is None:
        raise not_found("adapter")
    row = await session.get(Embedding, lora_id)
    fresh = row is not None and row.model == model and row.source_hash == _hash(model, adapter_text(adapter))
    return {
        "adapter_id": lora_id,
        "has_semantic_embedding": row is not None,
        "has_artistic_embedding": False,
        "has_technical_embedding": False,
        "has_extracted_features": False,
        "last_computed": row.computed_at.isoformat() if row else None,
        "needs_recomputation": not fresh,
    }


async def add_feedback(
    session: AsyncSession, lora_id: str, kind: str, context: str | None, reason: str | None
) -> dict[str, Any]:
    if await session.get(Adapter, lora_id) is None:
        raise not_found("adapter")
    row = Feedback(adapter_id=lora_id, feedback_type=kind, context=context, reason=reason)
    session.add(row)
    await session.commit()
    return {
        "id": row.id,
        "recommended_lora_id": lora_id,
        "feedback_type": kind,
        "created_at": row.created_at.isoformat(),
    }


async def stats(session: AsyncSession, engine: Engine) -> dict[str, Any]:
    total = int(await session.scalar(select(func.count()).select_from(Adapter)) or 0)
    with_embeddings = int(
        await session.scalar(
            select(func.count()).select_from(Embedding).where(Embedding.model == engine.encoder.model_id)
        )
        or 0
    )
    feedback = int(await session.scalar(select(func.count()).select_from(Feedback)) or 0)
    last = await session.scalar(select(func.max(Embedding.computed_at)))
    return {
        "total_loras": total,
        "loras_with_embeddings": with_embeddings,
        "embedding_coverage": round(with_embeddings / total, 4) if total else 0.0,
        "avg_recommendation_time_ms": round(engine.total_ms / engine.requests, 2) if engine.requests else 0.0,
        "cache_hit_rate": round(engine.index_hits / engine.index_lookups, 4) if engine.index_lookups else 0.0,
        "total_sessions": engine.requests,
        "user_preferences_count": 0,
        "feedback_count": feedback,
        "model_memory_usage_gb": None,
        "last_index_update": last.isoformat() if last else None,
    }
