"""The Qdrant and Weaviate adapters against loopback servers speaking their APIs: one suite, both stores
(its round trip is the port's contract, which test_vectors_pgvector runs too)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from kiln.providers.http import ProviderClient
from kiln.providers.vectors import VectorStoreError
from kiln.providers.vectors.qdrant import QdrantStore
from kiln.providers.vectors.weaviate import WeaviateStore, class_name
from tests.fakes.qdrant import fake_qdrant  # noqa: F401
from tests.fakes.weaviate import fake_weaviate  # noqa: F401


@pytest.fixture(params=["qdrant", "weaviate"])
async def store(request):
    fake = request.getfixturevalue(f"fake_{request.param}")
    client = ProviderClient(fake.url, name=request.param, origin="local", max_retries=0, timeout=5)
    adapter = QdrantStore(client) if request.param == "qdrant" else WeaviateStore(client)
    adapter.fake = fake
    try:
        yield adapter
    finally:
        await client.aclose()


def _records(n: int, d: int = 16):
    rng = np.random.default_rng(3)
    ids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"chunk-{i}")) for i in range(n)]
    vectors = rng.standard_normal((n, d)).astype(np.float32)
    payloads = [
        {"document_id": f"doc-{i % 5}", "chunk_index": i, "text": f"t{i}", "category": "a" if i % 2 else "b"}
        for i in range(n)
    ]
    return ids, vectors, payloads


async def test_round_trip(store):
    await check_round_trip(store)


async def check_round_trip(store) -> None:
    """The port's contract, shared with the pgvector suite."""
    ids, vectors, payloads = _records(40)
    await store.health()
    await store.ensure_index("kb_demo_g1", 16, {"category": "text"})
    await store.ensure_index("kb_demo_g1", 16)  # idempotent
    assert await store.count("kb_demo_g1") == 0
    await store.upsert("kb_demo_g1", ids, vectors, payloads)
    assert await store.count("kb_demo_g1") == 40
    hits = await store.query("kb_demo_g1", vectors[7], 3)
    assert hits[0].id == ids[7] and abs(hits[0].score - 1.0) < 1e-4
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = [ids[i] for i in np.argsort(-(normed @ normed[7]))[:3]]
    assert [h.id for h in hits] == expected
    filtered = await store.query("kb_demo_g1", vectors[7], 5, filters={"category": "b"})
    assert filtered and all(int(payloads[ids.index(h.id)]["chunk_index"]) % 2 == 0 for h in filtered)
    await store.delete("kb_demo_g1", [ids[7]])
    assert (await store.query("kb_demo_g1", vectors[7], 1))[0].id != ids[7]
    await store.delete_documents("kb_demo_g1", ["doc-0", "doc-1"])
    assert await store.count("kb_demo_g1") == 40 - 1 - 16 + (1 if 7 % 5 in (0, 1) else 0)
    await store.drop_index("kb_demo_g1")
    assert await store.count("kb_demo_g1") is None
    with pytest.raises(VectorStoreError) as raised:
        await store.query("kb_demo_g1", vectors[0], 1)
    assert raised.value.code in ("vector_index_not_found", "vector_store_error")


async def test_deletes_are_batched_not_per_chunk(store):
    ids, vectors, payloads = _records(30)
    await store.ensure_index("kb_batch_g1", 16)
    await store.upsert("kb_batch_g1", ids, vectors, payloads)
    before = len(store.fake.requests)
    await store.delete("kb_batch_g1", ids[:25])
    assert len(store.fake.requests) - before == 1
    assert await store.count("kb_batch_g1") == 5


async def test_qdrant_collection_has_the_real_dimension(fake_qdrant):  # noqa: F811
    async with ProviderClient(fake_qdrant.url, name="qdrant", origin="local", max_retries=0) as client:
        store = QdrantStore(client)
        await store.ensure_index("kb_dim_g1", 384, {"year": "int"})
        assert fake_qdrant.collections["kb_dim_g1"].size == 384
        assert fake_qdrant.collections["kb_dim_g1"].indexes["year"] == "integer"
        with pytest.raises(VectorStoreError) as raised:
            await store.ensure_index("kb_dim_g1", 768)
        assert raised.value.code == "vector_dimension_mismatch"
        with pytest.raises(VectorStoreError):  # the reference's `<uuid>::chunk::<n>` ids are refused by Qdrant
            await store.upsert("kb_dim_g1", ["doc::chunk::0"], np.ones((1, 384)), [{}])


def test_weaviate_class_names():
    assert class_name("kb_my_docs_g2") == "KbMyDocsG2"
    with pytest.raises(VectorStoreError):
        class_name("bad name")
