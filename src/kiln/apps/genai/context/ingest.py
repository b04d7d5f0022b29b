"""Chunk, embed and index documents into a knowledge base's vector index, keeping retrieval
consistent: new vectors are written to the store first (invisible: retrieval only answers hits
whose chunk row exists in the live generation), then one transaction replaces the document's
chunk rows, then the old vectors are deleted. A chunk whose text is unchanged keeps its vector
(no re-embedding on edits that touch part of a document)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.chunking import ChunkPiece, chunk_document
from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase
from kiln.apps.genai.context.runtime import embedder_for, store_for, tokenizer_for
from kiln.providers.embeddings import EmbeddingsError, validate_vectors

EMBED_GROUP = 256  # chunks embedded per call (the encoder batches inside)
WRITE_GROUP = 64  # documents swapped per transaction
READ_GROUP = 500  # document ids per IN (...) read, under every database's bound-parameter limit
Progress = Callable[[int, int], Awaitable[None]]


class IngestError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def physical_index(kb: KnowledgeBase, generation: int | None = None) -> str:
    return f"{kb.index_name}_g{generation or kb.generation}"


def chunk_config(kb: KnowledgeBase) -> tuple[int, int]:
    config = kb.chunking_config_json or {}
    return int(config.get("chunk_length", 300)), int(config.get("chunk_overlap", 60))


def payload_for(kb: KnowledgeBase, doc: Document, piece: ChunkPiece) -> dict[str, Any]:
    payload = {
        key: value for key, value in (doc.metadata_json or {}).items() if isinstance(value, str | int | float | bool)
    }
    payload.update(
        {
            "knowledge_base_id": kb.id,
            "document_id": doc.id,
            "chunk_index": piece.index,
            "title": doc.title,
            "source_type": doc.source_type,
            "text": piece.text,
        }
    )
    if piece.page_number is not None:
        payload["page_number"] = piece.page_number
    return payload


class Runtime:
    """The KB's embedder, store and tokenizer, resolved once per job."""

    def __init__(self, embedder: Any, store: Any, tokenizer: Any):
        self.embedder, self.store, self.tokenizer = embedder, store, tokenizer

    @classmethod
    async def of(cls, session: AsyncSession, kernel: Any, kb: KnowledgeBase) -> Runtime:
        embedder = await embedder_for(
            session, kernel, kb.embedding_provider_instance_id, kb.embedding_model, kb.embedding_dimension
        )
        store = await store_for(session, kernel, kb.backing_provider_instance_id)
        return cls(embedder, store, tokenizer_for(kb.backing_provider_key))

    async def close(self) -> None:
        for thing in (self.embedder, self.store):
            client = getattr(thing, "client", None)
            if client is not None:
                await client.aclose()


async def embed_checked(embedder: Any, texts: Sequence[str], dimension: int | None) -> np.ndarray:
    """Vectors for `texts`, refused when the provider answers another dimension than the KB's pin."""
    try:
        vectors = await embedder.embed(list(texts))
        return validate_vectors(vectors, len(texts), dimension)
    except EmbeddingsError as exc:
        mismatch = exc.code == "embeddings_dimension_mismatch"
        code = "knowledge_base_embeddings_dimension_mismatch" if mismatch else exc.code
        raise IngestError(code, exc.message) from exc


@dataclass
class PlannedDocument:
    """A document as it was read and chunked: plain values, so the embedding (in a task beside the
    drain's session) and the later write never touch an ORM object the session may have expired."""

    id: str
    content_hash: str
    pieces: list[ChunkPiece]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]


@dataclass
class IngestPlan:
    """One ingest's documents between its three stages: prepared (read and chunked), embedded, written."""

    kb_id: str
    index: str
    generation: int
    live: bool  # the generation retrieval answers from (documents' indexed state is updated)
    dimension: int | None
    documents: list[PlannedDocument] = field(default_factory=list)
    wanted: list[tuple[int, int, str]] = field(default_factory=list)  # (document, piece, text) to embed
    skipped: int = 0  # already indexed from their current text
    total: int = 0  # distinct documents named


async def prepare_ingest(
    session: AsyncSession,
    kb: KnowledgeBase,
    runtime: Runtime,
    document_ids: Sequence[str],
    *,
    generation: int | None = None,
    force: bool = False,
) -> IngestPlan:
    """Read and chunk `document_ids`; chunks whose text an old chunk of the document had keep its
    vector, the rest are listed in `wanted` for `embed_plan`. Holds no transaction when it returns."""
    generation = generation or kb.generation
    plan = IngestPlan(
        kb_id=kb.id,
        index=physical_index(kb, generation),
        generation=generation,
        live=generation == kb.generation,
        dimension=kb.embedding_dimension,
    )
    length, overlap = chunk_config(kb)
    await runtime.store.ensure_index(plan.index, int(kb.embedding_dimension or 0) or 384, _fields(kb))
    # One read of the documents, one of their old chunks and one thread hop for all the chunking:
    # a merged run of many small documents made three round trips per document (each a thread
    # hop on SQLite) while the encoder waited for work and the request path for the CPU. A
    # document named twice (updated again while queued) is indexed once, from its current text
    # (populate_existing: the drain's session may hold the row from an earlier run, and does
    # not expire on commit).
    unique_ids = list(dict.fromkeys(str(i) for i in document_ids))
    plan.total = len(unique_ids)
    rows = {
        doc.id: doc
        for start in range(0, len(unique_ids), READ_GROUP)
        for doc in (
            await session.execute(
                select(Document)
                .where(Document.id.in_(unique_ids[start : start + READ_GROUP]), Document.knowledge_base_id == kb.id)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    }
    docs = []
    for doc_id in unique_ids:
        doc = rows.get(doc_id)
        if doc is None:
            continue
        if not force and doc.indexed_hash == doc.content_hash and doc.ingest_status == "ready" and plan.live:
            plan.skipped += 1
            continue
        docs.append(doc)
    texts = [(doc.text, doc.page_texts) for doc in docs]
    tokenizer = runtime.tokenizer
    chunked = await asyncio.to_thread(
        lambda: [chunk_document(text, pages, tokenizer, length, overlap) for text, pages in texts]
    )
    reuse: dict[str, dict[str, bytes]] = {doc.id: {} for doc in docs}
    for start in range(0, len(docs), READ_GROUP):
        for row in (
            await session.execute(
                select(Chunk.document_id, Chunk.text_hash, Chunk.vector).where(
                    Chunk.document_id.in_([doc.id for doc in docs[start : start + READ_GROUP]]),
                    Chunk.generation == generation,
                    Chunk.vector.is_not(None),
                )
            )
        ).all():
            reuse[row.document_id][row.text_hash] = row.vector
    await session.commit()  # the reads' transaction: no snapshot (PostgreSQL) or read lock held while embedding
    dimension = int(kb.embedding_dimension or 0)
    embedded = runtime.store.kind == "embedded"  # it needs no payloads: hits resolve against the chunk rows
    for doc, pieces in zip(docs, chunked, strict=True):
        vectors = np.empty((len(pieces), dimension), dtype=np.float32)
        for i, piece in enumerate(pieces):
            old = reuse[doc.id].get(piece.hash)
            if old is not None:
                vectors[i] = np.frombuffer(old, dtype=np.float32)
            else:
                plan.wanted.append((len(plan.documents), i, piece.text))
        payloads = [{} if embedded else payload_for(kb, doc, piece) for piece in pieces]
        plan.documents.append(PlannedDocument(doc.id, doc.content_hash, pieces, vectors, payloads))
    return plan


async def embed_plan(runtime: Runtime, plan: IngestPlan) -> None:
    """Fill the plan's missing vectors; uses no database session (runs beside the drain's)."""
    for start in range(0, len(plan.wanted), EMBED_GROUP):
        group = plan.wanted[start : start + EMBED_GROUP]
        embedded = await embed_checked(runtime.embedder, [text for _, _, text in group], plan.dimension)
        for (position, i, _), vector in zip(group, embedded, strict=True):
            plan.documents[position].vectors[i] = vector


async def write_plan(
    session: AsyncSession, runtime: Runtime, plan: IngestPlan, *, progress: Progress | None = None, flush: bool = True
) -> dict[str, int]:
    """Swap the planned documents' chunks in, in groups: the group's vectors in one store call,
    then one transaction replaces every document's chunk rows (each document still changes all at
    once), then the old vectors go. `flush=False` leaves the store's files to a later flush (the
    drain flushes once its pipeline empties; a crash before it is repaired from the chunk rows)."""
    done, chunks_written = plan.skipped, 0
    for start in range(0, len(plan.documents), WRITE_GROUP):
        group = plan.documents[start : start + WRITE_GROUP]
        ids = [[str(uuid.uuid4()) for _ in doc.pieces] for doc in group]
        flat_ids = [chunk_id for doc_ids in ids for chunk_id in doc_ids]
        if flat_ids:
            vectors = np.concatenate([doc.vectors for doc in group])
            payloads = [payload for doc in group for payload in doc.payloads]
            await runtime.store.upsert(plan.index, flat_ids, vectors, payloads)
        # The old rows' ids come from the DELETE itself: read earlier, they would miss rows an
        # ingest written since (a pipelined drain prepares the next run before this one writes).
        stale = list(
            (
                await session.execute(
                    delete(Chunk)
                    .where(Chunk.document_id.in_([doc.id for doc in group]), Chunk.generation == plan.generation)
                    .returning(Chunk.id)
                )
            ).scalars()
        )
        rows = [
            {
                "id": chunk_id,
                "knowledge_base_id": plan.kb_id,
                "document_id": doc.id,
                "generation": plan.generation,
                "chunk_index": piece.index,
                "text": piece.text,
                "text_hash": piece.hash,
                "token_count": piece.token_count,
                "page_number": piece.page_number,
                "vector": doc.vectors[i].tobytes(),
            }
            for doc, doc_ids in zip(group, ids, strict=True)
            for i, (chunk_id, piece) in enumerate(zip(doc_ids, doc.pieces, strict=True))
        ]
        if rows:
            await session.execute(insert(Chunk), rows)
        if plan.live:
            await session.execute(
                update(Document),
                [
                    {
                        "id": doc.id,
                        "chunk_count": len(doc.pieces),
                        "indexed_hash": doc.content_hash,
                        "ingest_status": "ready",
                        "ingest_error": None,
                    }
                    for doc in group
                ],
            )
        await session.commit()
        chunks_written += len(rows)
        if stale:
            await runtime.store.delete(plan.index, stale)
        done += len(group)
        if progress is not None:
            await progress(done, plan.total)
    if flush:
        await runtime.store.flush(plan.index)
    return {"documents": done, "chunks": chunks_written}


async def index_documents(
    session: AsyncSession,
    kb: KnowledgeBase,
    runtime: Runtime,
    document_ids: Sequence[str],
    *,
    generation: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """(Re)index `document_ids` into `generation` (default: the live one), the three stages one
    after the other. Returns counters."""
    plan = await prepare_ingest(session, kb, runtime, document_ids, generation=generation, force=force)
    await embed_plan(runtime, plan)
    counts = await write_plan(session, runtime, plan, progress=progress)
    await refresh_counts(session, kb.id)
    return counts


def _fields(kb: KnowledgeBase) -> dict[str, str]:
    return {
        prop["name"]: prop.get("data_type", "text")
        for prop in (kb.schema_json or {}).get("properties", [])
        if isinstance(prop, dict) and prop.get("name")
    }


async def refresh_counts(session: AsyncSession, kb_id: str) -> None:
    kb = await session.get(KnowledgeBase, kb_id)
    if kb is None:
        return
    documents = await session.scalar(
        select(func.count()).select_from(Document).where(Document.knowledge_base_id == kb_id)
    )
    chunks = await session.scalar(
        select(func.count())
        .select_from(Chunk)
        .where(Chunk.knowledge_base_id == kb_id, Chunk.generation == kb.generation)
    )
    await session.execute(
        update(KnowledgeBase)
        .where(KnowledgeBase.id == kb_id)
        .values(document_count=documents or 0, chunk_count=chunks or 0)
    )
    await session.commit()


async def remove_documents(session: AsyncSession, kb: KnowledgeBase, store: Any, document_ids: Sequence[str]) -> int:
    """Delete documents with their chunks in one transaction (retrieval stops seeing them at once),
    then their vectors from every generation's index."""
    rows = (
        await session.execute(select(Chunk.id, Chunk.generation).where(Chunk.document_id.in_(list(document_ids))))
    ).all()
    result = await session.execute(
        delete(Document).where(Document.knowledge_base_id == kb.id, Document.id.in_(list(document_ids)))
    )
    await session.execute(delete(Chunk).where(Chunk.document_id.in_(list(document_ids))))
    await session.commit()
    by_generation: dict[int, list[str]] = {}
    for row in rows:
        by_generation.setdefault(row.generation, []).append(row.id)
    for generation, ids in by_generation.items():
        await store.delete(physical_index(kb, generation), ids)
        await store.flush(physical_index(kb, generation))
    await refresh_counts(session, kb.id)
    return int(result.rowcount or 0)


async def rebuild_store_index(session: AsyncSession, kb: KnowledgeBase, store: Any) -> int:
    """Re-create the live index from the chunk rows (an embedded index lost or out of date)."""
    index = physical_index(kb)
    await store.drop_index(index)
    await store.ensure_index(index, int(kb.embedding_dimension or 384), _fields(kb))
    count = 0
    result = await session.stream(
        select(Chunk.id, Chunk.vector).where(
            Chunk.knowledge_base_id == kb.id, Chunk.generation == kb.generation, Chunk.vector.is_not(None)
        )
    )
    async for part in result.partitions(5000):
        ids = [row.id for row in part]
        matrix = np.frombuffer(b"".join(row.vector for row in part), dtype=np.float32).reshape(len(part), -1)
        await store.upsert(index, ids, matrix, [{} for _ in ids])
        count += len(ids)
    await store.flush(index)
    return count
