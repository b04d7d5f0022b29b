"""Uploads of every supported type (files made here with the real libraries), local-directory
sources and sync, blue/green resync under concurrent queries, and persistence across a restart."""

from __future__ import annotations

import asyncio
import io
import json

from asgi_lifespan import LifespanManager
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from kiln.app import create_app
from kiln.apps.genai.context.config import ContextSettings
from tests.apps.genai.context.helpers import DOCS, KB, add_docs, create_kb, query, superadmin, wait_runs
from tests.apps.genai.helpers import assert_envelope, login


def make_pdf(pages: list[str]) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
        else:
            pdf.rect(20, 20, 100, 60, style="F")  # a "scan": marks, no text
    return bytes(pdf.output())


def encrypt(data: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt("secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def test_uploads_of_each_type(app, client):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "uploads")
    files = [
        ("files", ("tides.txt", b"Ocean tides are caused by the gravitational pull of the Moon.", "text/plain")),
        ("files", ("guide.md", b"# Knitting\n\nCast on stitches, then knit rows with two needles.", "text/markdown")),
        (
            "files",
            (
                "items.json",
                json.dumps(
                    [
                        {
                            "title": "Chess",
                            "text": "Chess openings such as the Sicilian Defence fight for the centre.",
                            "metadata": {"category": "games"},
                        },
                        {"name": "Tea", "content": "Green tea leaves are steamed to stop oxidation."},
                    ]
                ).encode(),
                "application/json",
            ),
        ),
        (
            "files",
            (
                "lines.jsonl",
                b'{"title": "Rust", "text": "Iron rusts when exposed to oxygen and water."}\n'
                b'{"title": "Bonsai", "text": "Bonsai trees are pruned to stay small."}\n',
                "application/x-ndjson",
            ),
        ),
        (
            "files",
            (
                "atlas.pdf",
                make_pdf(
                    [
                        "Mount Everest is the highest mountain above sea level.",
                        "The Mariana Trench is the deepest part of the ocean.",
                    ]
                ),
                "application/pdf",
            ),
        ),
    ]
    response = await client.post(
        f"{KB}/{kb['id']}/uploads", headers=headers, files=files, data={"metadata": json.dumps({"year": 2024})}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["count"] == 7 and {d["title"] for d in body["documents"]} >= {"tides", "guide", "Chess", "Tea", "atlas"}
    runs = await wait_runs(client, headers, kb["id"])
    assert runs[0]["status"] == "ready" and runs[0]["progress_percent"] == 100
    for question, title in [
        ("What causes tides?", "tides"),
        ("how to knit", "guide"),
        ("Sicilian Defence", "Chess"),
        ("why does iron rust", "Rust"),
        ("deepest point of the ocean", "atlas"),
    ]:
        results = (await query(client, headers, kb["id"], question, top_k=2))["results"]
        assert results[0]["title"] == title, (question, results)
    trench = (await query(client, headers, kb["id"], "Mariana Trench", top_k=1, search_method="keyword"))["results"][0]
    assert trench["metadata"]["page_number"] == 2 and trench["metadata"]["year"] == 2024
    games = await query(client, headers, kb["id"], "openings", filters={"category": "games"})
    assert [r["title"] for r in games["results"]] == ["Chess"]
    # Refusals: encrypted and text-less PDFs, unsupported types, bad JSON, too many files.
    upload = f"{KB}/{kb['id']}/uploads"
    pdf = make_pdf(["Secret text"])
    assert_envelope(
        await client.post(upload, headers=headers, files={"files": ("s.pdf", encrypt(pdf))}), 400, "pdf_encrypted"
    )
    assert_envelope(
        await client.post(upload, headers=headers, files={"files": ("scan.pdf", make_pdf([""]))}), 400, "pdf_no_text"
    )
    assert_envelope(
        await client.post(upload, headers=headers, files={"files": ("x.exe", b"MZ")}), 415, "unsupported_file_type"
    )
    assert_envelope(
        await client.post(upload, headers=headers, files={"files": ("x.json", b"{nope")}), 400, "invalid_json"
    )
    assert_envelope(await client.post(upload, headers=headers, files={"files": ("x.pdf", b"%PDF-garbage")}), 400)
    many = [("files", (f"f{i}.txt", b"text", "text/plain")) for i in range(11)]
    assert_envelope(await client.post(upload, headers=headers, files=many), 400, "upload_too_many_files")
    assert_envelope(
        await client.post(
            upload,
            headers=headers,
            files=[("files", ("a.txt", b"t", "text/plain"))],
            data={"metadata": '{"color": "red"}'},
        ),
        400,
        "invalid_metadata",
    )


async def test_local_directory_source_sync(app, client, tmp_path):
    root = tmp_path / "roots" / "docs"
    (root / "team").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("Top secret launch codes live outside the source root.")
    (root / "team" / "onboarding.md").write_text("New hires get a laptop and a badge on their first day.")
    (root / "team" / "holidays.txt").write_text("Employees have twenty-five days of paid holiday a year.")
    (root / "drafts.txt").write_text("Draft: nothing final here about parking.")
    (root / "team" / "leak.txt").symlink_to(outside)
    kernel = app.state.kernel
    kernel.set_surface_settings(ContextSettings(source_roots=[str(tmp_path / "roots")]))
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "handbook")
    sources = f"{KB}/{kb['id']}/sources"
    assert_envelope(
        await client.post(sources, headers=headers, json={"relative_path": "../"}), 400, "invalid_source_path"
    )
    assert_envelope(await client.post(sources, headers=headers, json={"relative_path": "missing"}), 400)
    response = await client.post(
        sources,
        headers=headers,
        json={
            "relative_path": "docs",
            "display_name": "Handbook",
            "exclude_globs": ["drafts*"],
            "metadata": {"category": "hr"},
        },
    )
    assert response.status_code == 201, response.text
    source = response.json()["source"]
    response = await client.post(f"{sources}/{source['id']}/sync", headers=headers)
    assert response.status_code == 202 and response.json()["sync_run"]["status"] == "queued"
    run = (await wait_runs(client, headers, kb["id"]))[0]
    assert run["status"] == "ready" and run["created_document_count"] == 2, run
    docs = (await client.get(f"{KB}/{kb['id']}/documents", headers=headers)).json()["documents"]
    assert sorted(d["source_path"] for d in docs) == ["team/holidays.txt", "team/onboarding.md"]
    assert all(d["managed_by_source"] and d["metadata"] == {"category": "hr"} for d in docs)
    ids = {d["source_path"]: d["id"] for d in docs}
    assert (await query(client, headers, kb["id"], "launch codes", search_method="keyword"))["results"] == []
    # Edit one file, delete another, re-sync: updated in place, deleted, never duplicated.
    (root / "team" / "holidays.txt").write_text("Employees have thirty days of paid vacation a year.")
    (root / "team" / "onboarding.md").unlink()
    await client.post(f"{sources}/{source['id']}/sync", headers=headers)
    runs = await wait_runs(client, headers, kb["id"])
    assert runs[0]["updated_document_count"] == 1 and runs[0]["deleted_document_count"] == 1, runs[0]
    docs = (await client.get(f"{KB}/{kb['id']}/documents", headers=headers)).json()["documents"]
    assert [d["id"] for d in docs] == [ids["team/holidays.txt"]]
    top = (await query(client, headers, kb["id"], "how many vacation days", top_k=1))["results"][0]
    assert "thirty" in top["text"]
    listed = (await client.get(sources, headers=headers)).json()["sources"][0]
    assert listed["last_sync_status"] == "ready" and listed["last_sync_at"]
    # The directory disappears: the run fails with the reason, the documents stay searchable.
    import shutil

    shutil.rmtree(root)
    await client.post(f"{sources}/{source['id']}/sync", headers=headers)
    runs = await wait_runs(client, headers, kb["id"])
    assert runs[0]["status"] == "error" and runs[0]["error_summary"], runs[0]
    listed = (await client.get(sources, headers=headers)).json()["sources"][0]
    assert listed["last_sync_status"] == "error" and listed["last_sync_error"]
    assert (await query(client, headers, kb["id"], "paid vacation", search_method="keyword"))["results"]


async def test_blue_green_resync_under_queries_and_restart(app, client, settings):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "bluegreen")
    ids = await add_docs(client, headers, kb["id"])
    before = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    response = await client.post(f"{KB}/{kb['id']}/resync", headers=headers)
    assert response.status_code == 202 and response.json()["sync_run"]["operation_type"] == "knowledge_resync"
    answers = []
    while True:  # queries keep answering, from the old index then the new one, never empty
        body = await query(client, headers, kb["id"], "How do bees make honey?", top_k=1)
        answers.append(body["results"][0]["document_id"] if body["results"] else None)
        runs = (await client.get(f"{KB}/{kb['id']}/sync-runs", headers=headers)).json()["sync_runs"]
        if runs[0]["status"] in ("ready", "error"):
            break
        await asyncio.sleep(0.02)
    assert runs[0]["status"] == "ready", runs[0]
    assert set(answers) == {ids["Honey bees"]}
    after = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert after["generation"] == before["generation"] + 1 and after["chunk_count"] == before["chunk_count"]
    assert after["last_sync_summary"].startswith("Rebuilt 5 document")
    home = settings.home / "vectors"
    assert not (home / before["active_index"]).exists() and (home / after["active_index"]).is_dir()

    # A restart with the embedded index files lost: rebuilt from the database on first query.
    import shutil

    shutil.rmtree(home / after["active_index"])
    restarted = create_app(settings, migrate=False)
    async with LifespanManager(restarted, startup_timeout=30, shutdown_timeout=30):
        import httpx

        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as second:
            headers = await login(second, "root@example.com")
            for question, title in [("How do bees make honey?", "Honey bees"), ("volcanic ash", "Volcanoes")]:
                body = await query(second, headers, kb["id"], question, top_k=1)
                assert body["results"][0]["title"] == title
    assert (home / after["active_index"] / "vectors.npy").is_file()


async def test_a_document_named_twice_in_one_run_is_indexed_once(app, client):
    """Merged ingest runs can name a document twice (updated again while queued): it is chunked,
    embedded and written once, not given two sets of chunk rows."""
    from sqlalchemy import func, select

    from kiln.apps.genai.context.ingest import Runtime, index_documents
    from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase

    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "twice")
    ids = await add_docs(client, headers, kb["id"])
    kernel = app.state.kernel
    async with kernel.db.session() as session:
        row = await session.get(KnowledgeBase, kb["id"])
        runtime = await Runtime.of(session, kernel, row)
        try:
            doc_id = ids["Honey bees"]
            counts = await index_documents(session, row, runtime, [doc_id, ids["Volcanoes"], doc_id], force=True)
        finally:
            await runtime.close()
        per_doc = await session.scalar(select(func.count()).select_from(Chunk).where(Chunk.document_id == doc_id))
        doc = await session.get(Document, doc_id)
        assert per_doc == doc.chunk_count >= 1
        assert counts["documents"] == 2
    assert (await query(client, headers, kb["id"], "How do bees make honey?"))["results"][0]["title"] == "Honey bees"


async def test_documents_posted_while_the_encoder_runs_are_answered_at_once(app, client, monkeypatch):
    """An ingest run holds no write transaction while it chunks and embeds: a document POSTed
    meanwhile is stored at once (on SQLite a write left pending before the embedding held the
    write gate, so every POST and job update waited for the encoder), and is indexed after."""
    from kiln.providers.embeddings import LocalSentenceEncoder

    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "concurrent")
    embed = LocalSentenceEncoder.embed
    answered: list[int | str] = []

    async def embed_while_posting(self, texts):
        if not answered:
            answered.append("posting")  # one POST, from the first embedding only
            post = client.post(
                f"{KB}/{kb['id']}/documents", headers=headers, json={"title": "Late", "text": DOCS[1][3]}
            )
            try:
                answered[0] = (await asyncio.wait_for(post, timeout=10)).status_code
            except TimeoutError:
                answered[0] = "no answer while the encoder ran"
        return await embed(self, texts)

    monkeypatch.setattr(LocalSentenceEncoder, "embed", embed_while_posting)
    response = await client.post(
        f"{KB}/{kb['id']}/documents", headers=headers, json={"title": "Bees", "text": DOCS[0][3]}
    )
    assert response.status_code == 201, response.text
    runs = await wait_runs(client, headers, kb["id"])
    assert answered == [201]
    assert len(runs) == 2 and all(run["status"] == "ready" for run in runs), runs
    assert (await query(client, headers, kb["id"], "volcanic ash", top_k=1))["results"][0]["title"] == "Late"


async def test_jobs_of_documents_posted_during_a_drain_leave_their_runs_to_it(app, client, monkeypatch):
    """A document POSTed while this process drains the KB gets a job that ends at once, without
    a claim attempt on the KB row (a write per document that queued behind the drain's writes);
    the drain picks its run up, and every document is indexed."""
    from sqlalchemy import event, select

    from kiln.core.jobs.models import Job
    from kiln.providers.embeddings import LocalSentenceEncoder

    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "drained")
    engine = app.state.kernel.db.engine.sync_engine
    embed = LocalSentenceEncoder.embed
    claims: list[str] = []
    jobs_done: list[str] = []

    def count_claims(conn, cursor, statement, *args) -> None:
        if statement.startswith("UPDATE genai_context_knowledge_bases SET sync_owner"):
            claims.append(statement)

    async def embed_after_more_posts(self, texts):
        if not jobs_done:
            jobs_done.append("posting")
            event.listen(engine, "before_cursor_execute", count_claims)
            try:
                job_ids = []
                for title, _, _, text in DOCS[1:]:
                    response = await client.post(
                        f"{KB}/{kb['id']}/documents", headers=headers, json={"title": title, "text": text}
                    )
                    assert response.status_code == 201, response.text
                    job_ids.append(response.json()["sync_run"]["job_id"])
                for _ in range(200):  # their jobs end while this run is still embedding
                    async with app.state.kernel.db.session() as session:
                        statuses = set((await session.execute(select(Job.status).where(Job.id.in_(job_ids)))).scalars())
                    if statuses == {"succeeded"}:
                        break
                    await asyncio.sleep(0.05)
                jobs_done[0] = ",".join(sorted(statuses))
            finally:
                event.remove(engine, "before_cursor_execute", count_claims)
        return await embed(self, texts)

    monkeypatch.setattr(LocalSentenceEncoder, "embed", embed_after_more_posts)
    title, _, _, text = DOCS[0]
    response = await client.post(f"{KB}/{kb['id']}/documents", headers=headers, json={"title": title, "text": text})
    assert response.status_code == 201, response.text
    runs = await wait_runs(client, headers, kb["id"])
    assert jobs_done == ["succeeded"]
    assert claims == []
    assert len(runs) == len(DOCS) and all(run["status"] == "ready" for run in runs), runs
    detail = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert detail["document_count"] == len(DOCS)
    assert (await query(client, headers, kb["id"], "volcanic ash", top_k=1))["results"][0]["title"] == "Volcanoes"
