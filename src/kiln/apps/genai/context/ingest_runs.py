"""Document-ingest runs in a pipeline: while one run's chunks are in the encoder, the drain
prepares the next run (reads and chunks its documents) and, once that embedding ends, starts the
next embedding before it writes the finished run's rows. The encoder is never left waiting while
Kiln writes rows, refreshes counts or chunks (between two runs it idled ~0.1 s each way before).

Each run keeps its own outcome: a failed embedding or write ends that run (and the runs merged
into it) in error and leaves the next one alone. Runs still finish in queue order."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context.ingest import (
    IngestError,
    IngestPlan,
    Runtime,
    embed_plan,
    prepare_ingest,
    refresh_counts,
    write_plan,
)
from kiln.apps.genai.context.models import Document, KnowledgeBase, KnowledgeSource, SyncRun
from kiln.core.db import utcnow
from kiln.providers.embeddings import EmbeddingsError
from kiln.providers.http import ProviderError
from kiln.providers.vectors import VectorStoreError

FAILURES = (IngestError, EmbeddingsError, VectorStoreError, ProviderError, OSError)


async def begin_run(session: AsyncSession, run: SyncRun) -> KnowledgeBase | None:
    """Mark the run running (with its document count: written with the status, not left pending,
    because a pending write flushed by the run's first read held SQLite's write gate through the
    chunking and the embedding, and every POST and job update waited for the encoder)."""
    kb = await session.get(KnowledgeBase, run.knowledge_base_id)
    if kb is None:
        return None
    run.status, run.started_at, run.current_step = "running", utcnow(), "starting"
    if run.operation_type == "document_ingest":
        run.total_document_count = len(run.payload.get("document_ids", []))
    await session.commit()
    return kb


async def fail_run(session: AsyncSession, run_id: str, exc: BaseException) -> tuple[SyncRun, KnowledgeBase | None]:
    """Roll back and record the failure on the run, its pending documents, its source and the KB."""
    await session.rollback()
    message = (getattr(exc, "message", None) or str(exc) or type(exc).__name__)[:1000]
    run = await session.get(SyncRun, run_id)  # type: ignore[assignment]
    kb = await session.get(KnowledgeBase, run.knowledge_base_id)
    run.status, run.error_summary = "error", message
    if run.operation_type == "document_ingest":
        await session.execute(
            update(Document)
            .where(
                Document.id.in_([str(i) for i in run.payload.get("document_ids", [])]),
                Document.ingest_status == "pending",
            )
            .values(ingest_status="error", ingest_error=message)
        )
    if run.source_id:
        source = await session.get(KnowledgeSource, run.source_id)
        if source is not None:
            source.last_sync_status, source.last_sync_error = "error", message
    if kb is not None:
        kb.sync_status, kb.last_sync_error = (
            ("ready" if run.operation_type != "source_sync" else "error"),
            message,
        )
        if run.operation_type == "knowledge_resync":
            kb.sync_status = "ready"  # the live index is untouched
    return run, kb


async def end_run(session: AsyncSession, run: SyncRun, kb: KnowledgeBase | None) -> None:
    run.finished_at = utcnow()
    if kb is not None:
        kb.last_sync_at = run.finished_at
    await session.commit()


MAX_MERGED_DOCUMENTS = 1000


async def merge_ingests(session: AsyncSession, run: SyncRun) -> list[SyncRun]:
    """Queued document-ingest runs right behind `run` join it (one embedding pass for all their
    documents); they end with its outcome."""
    if run.operation_type != "document_ingest":
        return []
    queued = (
        (
            await session.execute(
                select(SyncRun)
                .where(
                    SyncRun.knowledge_base_id == run.knowledge_base_id, SyncRun.status == "queued", SyncRun.id != run.id
                )
                .order_by(SyncRun.created_at, SyncRun.id)
                .limit(200)
            )
        )
        .scalars()
        .all()
    )
    merged, ids = [], list(run.payload.get("document_ids", []))
    for other in queued:
        if other.operation_type != "document_ingest" or len(ids) >= MAX_MERGED_DOCUMENTS:
            break
        ids += other.payload.get("document_ids", [])
        other.status, other.started_at, other.current_step = "running", utcnow(), f"merged into {run.id}"
        merged.append(other)
    if merged:
        run.payload = {**run.payload, "document_ids": ids}
        await session.commit()
    return merged


async def finish_merged(session: AsyncSession, run: SyncRun, merged: list[SyncRun]) -> None:
    run = await session.get(SyncRun, run.id)  # type: ignore[assignment]
    for other in merged:
        other = await session.get(SyncRun, other.id)  # type: ignore[assignment]
        other.status, other.error_summary, other.finished_at = run.status, run.error_summary, run.finished_at
        other.total_document_count = other.processed_document_count = len(other.payload.get("document_ids", []))
    if merged:
        await session.commit()


@dataclass
class IngestRun:
    """A document-ingest run whose chunks are (or are queued to be) in the encoder."""

    run: SyncRun
    kb: KnowledgeBase | None
    runtime: Runtime | None = None
    plan: IngestPlan | None = None
    embedding: asyncio.Task[None] | None = None
    failure: BaseException | None = None

    async def arrival_first(self, arrived: asyncio.Event) -> bool:
        """Wait until the embedding ends or `arrived` is set; whether `arrived` came first."""
        if self.embedding is None or self.embedding.done():
            return False
        waiting = asyncio.ensure_future(arrived.wait())
        try:
            await asyncio.wait({self.embedding, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        return not self.embedding.done()

    def abandon(self) -> None:
        """The drain stopped (cancelled) before this run ended: its embedding is not awaited."""
        if self.embedding is not None:
            self.embedding.cancel()


async def start_ingest(session: AsyncSession, kernel: Any, run: SyncRun) -> IngestRun:
    """Mark the run running, read and chunk its documents and queue their embedding (a task: the
    encoder takes it as soon as the embedding before it ends). Leaves no transaction open."""
    started = IngestRun(run, await begin_run(session, run))
    if started.kb is None:
        return started
    try:
        started.runtime = await Runtime.of(session, kernel, started.kb)
        started.plan = await prepare_ingest(
            session, started.kb, started.runtime, [str(i) for i in run.payload.get("document_ids", [])]
        )
        started.embedding = asyncio.create_task(embed_plan(started.runtime, started.plan))
    except FAILURES as exc:
        started.failure = exc
    return started


async def finish_ingest(session: AsyncSession, started: IngestRun, progress: Any, *, flush: bool) -> None:
    """Wait for the run's embedding, write its rows and record its outcome. `flush=False` when
    another ingest of the KB follows at once (it flushes the store's files for both)."""
    run, kb = started.run, started.kb
    if kb is None:
        return
    run_id = run.id

    async def step(done: int, total: int) -> None:
        run.processed_document_count = done
        await session.commit()
        if progress:
            await progress(done / max(total, 1), f"{done}/{total} documents")

    try:
        if started.failure is not None:
            raise started.failure
        assert started.embedding is not None and started.plan is not None and started.runtime is not None
        await started.embedding
        counts = await write_plan(session, started.runtime, started.plan, progress=step, flush=flush)
        await refresh_counts(session, kb.id)
        run.status, run.current_step, run.current_path = "ready", "done", None
        kb.sync_status, kb.last_sync_error = "ready", None
        kb.last_sync_summary = f"Indexed {counts['documents']} document(s) into {counts['chunks']} chunk(s)"
    except FAILURES as exc:
        run, kb = await fail_run(session, run_id, exc)
        if started.runtime is not None and started.plan is not None and flush:
            with contextlib.suppress(*FAILURES):  # what the runs before it wrote is still to be persisted
                await started.runtime.store.flush(started.plan.index)
    finally:
        if started.runtime is not None:
            await started.runtime.close()
    await end_run(session, run, kb)
