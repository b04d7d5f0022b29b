"""Sync runs: every change to a KB's index (document ingest, source sync, full resync) is a run
row processed by an engine job, one KB at a time: a job claims the KB's sync lock with a
conditional UPDATE and drains the KB's queued runs in order; a job that finds the lock held
leaves its run to the holder, which re-checks the queue after releasing the lock."""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.context import runtime as rt
from kiln.apps.genai.context.config import ContextSettings
from kiln.apps.genai.context.ingest import IngestError, Runtime, index_documents, physical_index, refresh_counts
from kiln.apps.genai.context.ingest_runs import (
    FAILURES,
    IngestRun,
    begin_run,
    end_run,
    fail_run,
    finish_ingest,
    finish_merged,
    merge_ingests,
    start_ingest,
)
from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase, KnowledgeSource, SyncRun
from kiln.core.db import new_id, utcnow

JOB_KIND = "genai.context.sync"
_CHECKED: dict[int, set[str]] = {}  # embedded indexes already compared with the DB in this process


@dataclass
class _Drain:
    """A drain this process runs now: its owner, last heartbeat, and the signal that a job left
    it a new run (a drain waiting on an embedding then starts that run beside it)."""

    owner: str
    beat: float
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


# kernel -> KB id -> the drain of that KB this process runs now
_draining: weakref.WeakKeyDictionary[Any, dict[str, _Drain]] = weakref.WeakKeyDictionary()


def run_dto(run: SyncRun) -> dict[str, Any]:
    if run.status == "ready":
        percent = 100
    elif run.total_document_count:
        percent = min(99, int(100 * run.processed_document_count / run.total_document_count))
    elif run.total_file_count:
        percent = min(99, int(100 * run.processed_file_count / run.total_file_count))
    else:
        percent = 0
    fields = (
        "id",
        "knowledge_base_id",
        "source_id",
        "operation_type",
        "status",
        "job_id",
        "total_file_count",
        "processed_file_count",
        "total_document_count",
        "processed_document_count",
        "scanned_file_count",
        "changed_file_count",
        "deleted_file_count",
        "created_document_count",
        "updated_document_count",
        "deleted_document_count",
        "current_step",
        "current_path",
        "error_summary",
        "created_by_user_id",
    )
    out = {name: getattr(run, name) for name in fields}
    for name in ("started_at", "finished_at", "created_at"):
        value = getattr(run, name)
        out[name] = value.isoformat() if value else None
    out["progress_percent"] = percent
    return out


async def enqueue(
    session: AsyncSession,
    kernel: Any,
    kb: KnowledgeBase,
    operation: str,
    *,
    source_id: str | None = None,
    payload: dict[str, Any] | None = None,
    user_id: str | None = None,
) -> SyncRun:
    """A queued run and its job, committed together; the job is kicked after the commit."""
    # The run's id is chosen here so the job row comes first and the run is inserted with its
    # job id (one statement per POSTed document fewer than inserting, then updating, the run).
    run_id = new_id()
    job = await kernel.jobs.create(
        session, JOB_KIND, {"knowledge_base_id": kb.id, "sync_run_id": run_id}, owner_id=user_id
    )
    run = SyncRun(
        id=run_id,
        knowledge_base_id=kb.id,
        source_id=source_id,
        operation_type=operation,
        status="queued",
        payload=payload or {},
        created_by_user_id=user_id,
        job_id=job.id,
    )
    session.add(run)
    if operation != "document_ingest":
        kb.sync_status = "syncing"
    await session.commit()
    await kernel.jobs.kick(job.id)
    return run


async def _claim(session: AsyncSession, kb_id: str, owner: str, stale_seconds: float) -> bool:
    now = utcnow()
    result = await session.execute(
        update(KnowledgeBase)
        .where(
            KnowledgeBase.id == kb_id,
            or_(
                KnowledgeBase.sync_owner.is_(None),
                KnowledgeBase.sync_owner == owner,
                KnowledgeBase.sync_heartbeat_at < now - timedelta(seconds=stale_seconds),
            ),
        )
        .values(sync_owner=owner, sync_heartbeat_at=now)
    )
    await session.commit()
    return bool(result.rowcount)


async def _release(session: AsyncSession, kb_id: str, owner: str) -> None:
    await session.execute(
        update(KnowledgeBase)
        .where(KnowledgeBase.id == kb_id, KnowledgeBase.sync_owner == owner)
        .values(sync_owner=None, sync_heartbeat_at=None)
    )
    await session.commit()


async def _next_run(session: AsyncSession, kb_id: str) -> SyncRun | None:
    return await session.scalar(
        select(SyncRun)
        .where(SyncRun.knowledge_base_id == kb_id, SyncRun.status == "queued")
        .order_by(SyncRun.created_at, SyncRun.id)
        .limit(1)
    )


async def drain(kernel: Any, kb_id: str, progress: Any = None) -> dict[str, Any]:
    """Process the KB's queued runs while holding its lock; returns how many ran.

    A job whose KB this process is already draining leaves its run to that drain without asking
    the database: a run is committed before its job is kicked, and the drain reads the queue
    again after it leaves `_draining`, so the run cannot be missed. (Each document POSTed during
    an ingest made one such job; its claim attempt was a write that queued behind the drain's.)
    A drain silent for longer than the stale timeout is not waited for: the job goes to the
    database, which hands the lock over as it does between processes."""
    draining = _draining.setdefault(kernel, {})
    settings = kernel.surface_settings(ContextSettings)
    owner = str(uuid.uuid4())
    processed = 0
    async with kernel.db.session() as session:
        while True:
            active = draining.get(kb_id)
            if active is not None and time.monotonic() - active.beat < settings.sync_stale_seconds:
                active.arrived.set()
                return {"processed": processed, "deferred": True}
            mine = draining[kb_id] = _Drain(owner, time.monotonic())
            try:
                if not await _claim(session, kb_id, owner, settings.sync_stale_seconds):
                    return {"processed": processed, "deferred": True}

                async def heartbeat() -> None:
                    await _claim(session, kb_id, owner, settings.sync_stale_seconds)
                    mine.beat = time.monotonic()  # noqa: B023 (called only within this iteration)

                processed += await _run_queue(session, kernel, kb_id, progress, heartbeat, mine.arrived)
                await _release(session, kb_id, owner)
            finally:
                if draining.get(kb_id) is mine:
                    del draining[kb_id]
            if await _next_run(session, kb_id) is None:  # none slipped in while releasing
                return {"processed": processed}


async def _run_queue(
    session: AsyncSession,
    kernel: Any,
    kb_id: str,
    progress: Any,
    heartbeat: Callable[[], Awaitable[None]],
    arrived: asyncio.Event,
) -> int:
    """Run the KB's queued runs in order. Document-ingest runs are pipelined (`ingest_runs`):
    the next one is read, chunked and queued for the encoder before the one embedding now is
    written, so the encoder goes from one run's chunks to the next without waiting for Kiln.
    With nothing queued behind an embedding, the drain waits for the embedding to end or for a
    job of this process to leave it a new run (`arrived`), whichever comes first."""
    processed = 0
    pending: tuple[IngestRun, list[SyncRun]] | None = None  # embedding now, written next
    following: tuple[IngestRun, list[SyncRun]] | None = None  # started behind it
    try:
        while True:
            arrived.clear()
            run = await _next_run(session, kb_id)
            if run is None and pending is not None and await pending[0].arrival_first(arrived):
                continue
            following = None
            if run is not None and run.operation_type == "document_ingest":
                merged = await merge_ingests(session, run)
                following = (await start_ingest(session, kernel, run), merged)
            if pending is not None:
                started, merged_before = pending
                pending = None
                await finish_ingest(session, started, progress, flush=following is None)
                await finish_merged(session, started.run, merged_before)
                processed += 1 + len(merged_before)
                await heartbeat()
            pending = following
            if run is None:
                return processed
            if following is None:  # a source sync or a resync: alone, after the ingests before it
                await execute(session, kernel, run, progress)
                processed += 1
                await heartbeat()
    finally:
        for queued in (pending, following):  # cancelled: queued embeddings are not awaited
            if queued is not None:
                queued[0].abandon()


async def execute(session: AsyncSession, kernel: Any, run: SyncRun, progress: Any) -> None:
    """A source sync or a full resync (document ingests go through `ingest_runs`)."""
    kb = await begin_run(session, run)
    if kb is None:
        return
    runtime: Runtime | None = None
    try:
        runtime = await Runtime.of(session, kernel, kb)
        if run.operation_type == "source_sync":
            from kiln.apps.genai.context.sources import sync_source

            source = await session.get(KnowledgeSource, run.source_id or "")
            if source is None:
                raise IngestError("knowledge_source_not_found", "The source was deleted")
            summary = await sync_source(session, kernel, run, kb, source, runtime, progress)
        else:
            summary = await resync(session, kernel, run, kb, runtime, progress)
        run.status, run.current_step, run.current_path = "ready", "done", None
        kb.sync_status, kb.last_sync_error, kb.last_sync_summary = "ready", None, summary
    except FAILURES as exc:
        run, kb = await fail_run(session, run.id, exc)  # type: ignore[assignment]
    finally:
        if runtime is not None:
            await runtime.close()
    await end_run(session, run, kb)


async def resync(
    session: AsyncSession, kernel: Any, run: SyncRun, kb: KnowledgeBase, runtime: Runtime, progress: Any
) -> str:
    """Blue/green: reconcile sources, build generation g+1 beside the live g, swap, then drop g.
    A failure drops the half-built g+1 and leaves g serving."""
    from kiln.apps.genai.context.sources import sync_source

    for source in (
        (
            await session.execute(
                select(KnowledgeSource).where(
                    KnowledgeSource.knowledge_base_id == kb.id, KnowledgeSource.lifecycle_state == "active"
                )
            )
        )
        .scalars()
        .all()
    ):
        await sync_source(session, kernel, run, kb, source, runtime, None)
    old, new = kb.generation, kb.generation + 1
    ids = list(
        (
            await session.execute(
                select(Document.id).where(Document.knowledge_base_id == kb.id).order_by(Document.created_at)
            )
        ).scalars()
    )
    run.total_document_count, run.current_step = len(ids), "rebuilding"
    await session.commit()

    async def step(done: int, total: int) -> None:
        run.processed_document_count = done
        await session.commit()
        if progress:
            await progress(done / max(total, 1), f"rebuilt {done}/{total} documents")

    await runtime.store.drop_index(physical_index(kb, new))
    await session.execute(delete(Chunk).where(Chunk.knowledge_base_id == kb.id, Chunk.generation == new))
    await session.commit()
    try:
        counts = await index_documents(session, kb, runtime, ids, generation=new, force=True, progress=step)
    except BaseException:
        await session.rollback()
        await session.execute(delete(Chunk).where(Chunk.knowledge_base_id == kb.id, Chunk.generation == new))
        await session.commit()
        await runtime.store.drop_index(physical_index(kb, new))
        raise
    # The swap: one UPDATE makes generation `new` live for every query that starts after it.
    kb.generation = new
    await session.execute(
        update(Document)
        .where(Document.knowledge_base_id == kb.id)
        .values(indexed_hash=Document.content_hash, ingest_status="ready", ingest_error=None)
    )
    await session.commit()
    await session.execute(delete(Chunk).where(Chunk.knowledge_base_id == kb.id, Chunk.generation == old))
    await session.commit()
    await runtime.store.drop_index(physical_index(kb, old))
    await refresh_counts(session, kb.id)
    return f"Rebuilt {counts['documents']} document(s) into {counts['chunks']} chunk(s) (generation {new})"


async def ensure_embedded_index(session: AsyncSession, kernel: Any, kb: KnowledgeBase) -> None:
    """The embedded store's copy of the live index matches the chunk rows, rebuilt when it does not
    (files lost, a crash between writing and flushing)."""
    if kb.backing_provider_key != rt.EMBEDDED_VECTOR:
        return
    from sqlalchemy import func

    from kiln.apps.genai.context.ingest import rebuild_store_index

    store = rt.embedded_store(kernel)
    key = physical_index(kb)
    if key in _CHECKED.setdefault(id(store), set()):
        return
    expected = (
        await session.scalar(
            select(func.count())
            .select_from(Chunk)
            .where(Chunk.knowledge_base_id == kb.id, Chunk.generation == kb.generation)
        )
        or 0
    )
    have = await store.count(key)
    if have != expected:
        await rebuild_store_index(session, kb, store)
    _CHECKED[id(store)].add(key)
