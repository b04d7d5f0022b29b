"""The drain pipelines document-ingest runs: the next run is read, chunked and handed to the
encoder before the run being embedded is written, so the encoder never waits for Kiln between
runs; every run still ends in queue order with its own outcome, and a document updated while its
first ingest embeds ends up indexed from its new text."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import func, select

from kiln.apps.genai.context.models import Chunk, SyncRun
from kiln.providers.embeddings import EmbeddingsError, LocalSentenceEncoder
from tests.apps.genai.context.helpers import DOCS, KB, create_kb, query, superadmin, wait_runs


async def _run_statuses(app, kb_id: str) -> dict[str, str]:
    async with app.state.kernel.db.session() as session:
        rows = (
            await session.execute(select(SyncRun.id, SyncRun.status).where(SyncRun.knowledge_base_id == kb_id))
        ).all()
    return {row.id: row.status for row in rows}


async def _chunk_count(app, document_id: str) -> int:
    async with app.state.kernel.db.session() as session:
        return int(
            await session.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == document_id))
        )


async def _document(client, headers, kb_id: str, document_id: str) -> dict:
    listed = (await client.get(f"{KB}/{kb_id}/documents", headers=headers)).json()["documents"]
    return next(doc for doc in listed if doc["id"] == document_id)


async def _post(client, headers, kb_id: str, doc: tuple) -> dict:
    title, _, _, text = doc
    response = await client.post(f"{KB}/{kb_id}/documents", headers=headers, json={"title": title, "text": text})
    assert response.status_code == 201, response.text
    return response.json()


async def _post_and_wait(app, client, headers, kb: dict) -> tuple[str, str]:
    """POST a second document from inside the first embedding and give the drain 5 s to start
    its run beside that embedding; the run's id and its status then."""
    run_id = (await _post(client, headers, kb["id"], DOCS[1]))["sync_run"]["id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (await _run_statuses(app, kb["id"]))[run_id] == "queued":
        await asyncio.sleep(0.05)
    return run_id, (await _run_statuses(app, kb["id"]))[run_id]


async def test_the_next_run_is_embedding_before_the_previous_one_is_written(app, client, monkeypatch):
    """While run 1 embeds, run 2 (posted meanwhile) is started: read, chunked and its embedding
    asked for, before run 1's rows are written. Sequential, run 2 would start only after run 1 ended."""
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "pipelined")
    embed = LocalSentenceEncoder.embed
    calls: list[dict] = []
    state: dict = {}

    async def observed_embed(self, texts):
        calls.append({"texts": list(texts), "first_doc_chunks": await _chunk_count(app, state["first"])})
        if len(calls) == 1:
            state["second"], state["second_started_during_first"] = await _post_and_wait(app, client, headers, kb)
        return await embed(self, texts)

    monkeypatch.setattr(LocalSentenceEncoder, "embed", observed_embed)
    first = await _post(client, headers, kb["id"], DOCS[0])
    state["first"] = first["document"]["id"]
    runs = await wait_runs(client, headers, kb["id"])
    assert all(run["status"] == "ready" for run in runs), runs
    assert state["second_started_during_first"] == "running"
    assert len(calls) == 2
    assert calls[1]["first_doc_chunks"] == 0  # the encoder got run 2's chunks before run 1 was written
    assert await _chunk_count(app, state["first"]) >= 1
    detail = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert detail["document_count"] == 2 and detail["chunk_count"] >= 2
    assert (await query(client, headers, kb["id"], "volcanic ash", top_k=1))["results"][0]["title"] == "Volcanoes"


async def test_a_document_updated_while_its_ingest_embeds_is_indexed_from_its_new_text(app, client, monkeypatch):
    """The drain's session keeps the rows it read (no expiry on commit): the second run must read
    the document again, or it sees the old text already indexed and skips the update."""
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "edited")
    embed = LocalSentenceEncoder.embed
    state: dict = {}

    async def update_during_first_embed(self, texts):
        if not state.get("updated"):
            state["updated"] = True
            title, _, _, text = DOCS[1]
            response = await client.put(
                f"{KB}/{kb['id']}/documents/{state['doc']}", headers=headers, json={"title": title, "text": text}
            )
            assert response.status_code == 200, response.text
        return await embed(self, texts)

    monkeypatch.setattr(LocalSentenceEncoder, "embed", update_during_first_embed)
    state["doc"] = (await _post(client, headers, kb["id"], DOCS[0]))["document"]["id"]
    runs = await wait_runs(client, headers, kb["id"])
    assert state["updated"] and all(run["status"] == "ready" for run in runs), runs
    async with app.state.kernel.db.session() as session:
        texts = list((await session.execute(select(Chunk.text).where(Chunk.document_id == state["doc"]))).scalars())
    assert texts and all("volcano" in text.lower() for text in texts), texts
    assert (await _document(client, headers, kb["id"], state["doc"]))["ingest_status"] == "ready"
    result = (await query(client, headers, kb["id"], "volcanic ash", top_k=1))["results"][0]
    assert result["title"] == "Volcanoes" and "magma" in result["text"]


async def test_a_failed_embedding_fails_its_run_only(app, client, monkeypatch):
    """With run 2 already started beside run 1, run 1's failed embedding ends run 1 (and its
    document) in error; run 2 is written and its document found."""
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "one-fails")
    embed = LocalSentenceEncoder.embed
    state: dict = {}

    async def first_fails(self, texts):
        if not state.get("failed"):
            state["failed"] = True
            state["second"], _ = await _post_and_wait(app, client, headers, kb)
            raise EmbeddingsError("embeddings_failed", "the encoder broke")
        return await embed(self, texts)

    monkeypatch.setattr(LocalSentenceEncoder, "embed", first_fails)
    first = await _post(client, headers, kb["id"], DOCS[0])
    runs = {run["id"]: run for run in await wait_runs(client, headers, kb["id"])}
    assert runs[first["sync_run"]["id"]]["status"] == "error"
    assert "the encoder broke" in runs[first["sync_run"]["id"]]["error_summary"]
    assert runs[state["second"]]["status"] == "ready"
    assert await _chunk_count(app, first["document"]["id"]) == 0
    assert (await _document(client, headers, kb["id"], first["document"]["id"]))["ingest_status"] == "error"
    assert (await query(client, headers, kb["id"], "volcanic ash", top_k=1))["results"][0]["title"] == "Volcanoes"
