"""Chunk, embed and index documents into a knowledge base's vector index, keeping retrieval
consistent: new vectors are written to the store first (invisible: retrieval only answers hits
whose chunk row exists in the live generation), then one transaction replaces the document's
chunk rows, then the old vectors are deleted. A chunk whose text is unchanged keeps its vector
(no re-embedding on edits that touch part of a document)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
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
    """(Re)index `document_ids` into `generation` (default: the live one). Returns counters."""
    generation = generation or kb.generation
    index = physical_index(kb, generation)
    length, overlap = chunk_config(kb)
    await runtime.store.ensure_index(index, int(kb.embedding_dimension or 0) or 384, _fields(kb))
    dimension = int(kb.embedding_dimension or 0)
    done = chunks_written = 0
    # Chunk every document first, then embed their new chunks together in large batches (a run of
    # many small documents embeds as fast as one long one), then swap each document's rows.
    plan: list[tuple[Document, list[ChunkPiece], list[Any], np.ndarray]] = []
    wanted: list[tuple[int, int, str]] = []  # (plan position, piece position, text)
    # One read of the documents, one of their old chunks and one thread hop for all the chunking:
    # a merged run of many small documents made three round trips per document (each a thread
    # hop on SQLite) while the encoder waited for work and the request path for the CPU. A
    # document named twice (updated again while queued) is indexed once, from its current text.
    unique_ids = list(dict.fromkeys(str(i) for i in document_ids))
    rows = {
        doc.id: doc
        for start in range(0, len(unique_ids), READ_GROUP)
        for doc in (
            await session.execute(
                select(Document).where(
                    Document.id.in_(unique_ids[start : start + READ_GROUP]), Document.knowledge_base_id == kb.id
                )
            )
        ).scalars()
    }
    docs = []
    for doc_id in unique_ids:
        doc = rows.get(doc_id)
        if doc is None:
            continue
        if (
            not force
            and doc.indexed_hash == doc.content_hash
            and doc.ingest_status == "ready"
            and generation == kb.generation
        ):
            done += 1
            continue
        docs.append(doc)
    texts = [(doc.text, doc.page_texts) for doc in docs]
    tokenizer = runtime.tokenizer
    chunked = await asyncio.to_thread(
        lambda: [chunk_document(text, pages, tokenizer, length, overlap) for text, pages in texts]
    )
    old_by_doc: dict[str, list[Any]] = {doc.id: [] for doc in docs}
    for start in range(0, len(docs), READ_GROUP):
        for row in (
            await session.execute(
                select(Chunk.document_id, Chunk.id, Chunk.text_hash, Chunk.vector).where(
                    Chunk.document_id.in_([doc.id for doc in docs[start : start + READ_GROUP]]),
                    Chunk.generation == generation,
                )
            )
        ).all():
            old_by_doc[row.document_id].append(row)
    for doc, pieces in zip(docs, chunked, strict=True):
        old = old_by_doc[doc.id]
        reuse = {row.text_hash: row.vector for row in old if row.vector}
        vectors = np.empty((len(pieces), dimension), dtype=np.float32)
        for i, piece in enumerate(pieces):
            if piece.hash in reuse:
                vectors[i] = np.frombuffer(reuse[piece.hash], dtype=np.float32)
            else:
                wanted.append((len(plan), i, piece.text))
        plan.append((doc, pieces, old, vectors))
    for start in range(0, len(wanted), EMBED_GROUP):
        group = wanted[start : start + EMBED_GROUP]
        embedded = await embed_checked(runtime.embedder, [text for _, _, text in group], kb.embedding_dimension)
        for (position, i, _), vector in zip(group, embedded, strict=True):
            plan[position][3][i] = vector
    # Documents are swapped in groups: the group's vectors in one store call, then one transaction
    # replaces every document's chunk rows (each document still changes all at once), then the old
    # vectors go. One commit per document (plus one per progress step) left the encoder idle
    # between runs for longer than it took to embed a small document.
    for start in range(0, len(plan), WRITE_GROUP):
        group = plan[start : start + WRITE_GROUP]
        ids = [[str(uuid.uuid4()) for _ in pieces] for _, pieces, _, _ in group]
        flat_ids = [chunk_id for doc_ids in ids for chunk_id in doc_ids]
        if flat_ids:
            # The embedded store needs no payloads: hits are resolved against the chunk rows.
            payloads = [
                {} if runtime.store.kind == "embedded" else payload_for(kb, doc, piece)
                for doc, pieces, _, _ in group
                for piece in pieces
            ]
            await runtime.store.upsert(index, flat_ids, np.concatenate([v for *_, v in group]), payloads)
        stale: list[str] = []
        await session.execute(
            delete(Chunk).where(Chunk.document_id.in_([doc.id for doc, *_ in group]), Chunk.generation == generation)
        )
        for (doc, pieces, old, vectors), doc_ids in zip(group, ids, strict=True):
            session.add_all(
                [
                    Chunk(
                        id=chunk_id,
                        knowledge_base_id=kb.id,
                        document_id=doc.id,
                        generation=generation,
                        chunk_index=piece.index,
                        text=piece.text,
                        text_hash=piece.hash,
                        token_count=piece.token_count,
                        page_number=piece.page_number,
                        vector=vectors[i].tobytes(),
                    )
                    for i, (chunk_id, piece) in enumerate(zip(doc_ids, pieces, strict=True))
                ]
            )
            if generation == kb.generation:
                doc.chunk_count = len(pieces)
                doc.indexed_hash = doc.content_hash
                doc.ingest_status = "ready"
                doc.ingest_error = None
            stale += [row.id for row in old]
            chunks_written += len(pieces)
        await session.commit()
        if stale:
            await runtime.store.delete(index, stale)
        done += len(group)
        if progress is not None:
            await progress(done, len(unique_ids))
    await runtime.store.flush(index)
    await refresh_counts(session, kb.id)
    return {"documents": done, "chunks": chunks_written}


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
