"""The embedded vector store: exact below the threshold, HNSW above, persisted, filtered."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from kiln.providers.vectors import VectorStoreError
from kiln.providers.vectors.embedded import HNSW_EXPANSION_SEARCH, EmbeddedVectorStore


def _data(n: int, d: int = 32, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(int=i + 1)) for i in range(n)], rng.standard_normal((n, d)).astype(np.float32)


def _exact(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return list(np.argsort(-(v @ (query / np.linalg.norm(query))))[:k])


async def test_exact_search_persist_and_delete(tmp_path) -> None:
    store = EmbeddedVectorStore(tmp_path)
    ids, vectors = _data(500)
    await store.ensure_index("kb_a", 32)
    await store.upsert("kb_a", ids, vectors, [{}] * len(ids))
    hits = await store.query("kb_a", vectors[7], 5)
    assert hits[0].id == ids[7] and abs(hits[0].score - 1.0) < 1e-5
    assert [h.id for h in hits] == [ids[i] for i in _exact(vectors, vectors[7], 5)]
    await store.delete("kb_a", [ids[7]])
    assert (await store.query("kb_a", vectors[7], 1))[0].id != ids[7]
    await store.flush("kb_a")
    reopened = EmbeddedVectorStore(tmp_path)
    assert await reopened.count("kb_a") == 499
    assert (await reopened.query("kb_a", vectors[8], 1))[0].id == ids[8]
    # A re-used row (free list) and an update in place.
    await reopened.upsert("kb_a", [ids[7], ids[9]], vectors[[7, 7]], [{}, {}])
    assert {h.id for h in await reopened.query("kb_a", vectors[7], 2)} == {ids[7], ids[9]}
    allowed = await reopened.query("kb_a", vectors[7], 3, allowed_ids=[ids[1], ids[2], "missing"])
    assert {h.id for h in allowed} == {ids[1], ids[2]}


async def test_hnsw_above_threshold_recall_and_restart(tmp_path) -> None:
    store = EmbeddedVectorStore(tmp_path, hnsw_threshold=1000)
    ids, vectors = _data(3000, seed=1)
    await store.ensure_index("kb_h", 32)
    await store.upsert("kb_h", ids[:800], vectors[:800], [{}] * 800)
    assert store._collections["kb_h"].hnsw is None
    await store.upsert("kb_h", ids[800:], vectors[800:], [{}] * 2200)
    assert store._collections["kb_h"].hnsw is not None
    queries = np.random.default_rng(5).standard_normal((30, 32)).astype(np.float32)
    recall = np.mean(
        [
            len({h.id for h in await store.query("kb_h", q, 10)} & {ids[i] for i in _exact(vectors, q, 10)}) / 10
            for q in queries
        ]
    )
    assert recall >= 0.9
    await store.delete("kb_h", ids[:10])
    assert ids[0] not in {h.id for h in await store.query("kb_h", vectors[0], 5)}
    await store.flush("kb_h")
    assert (tmp_path / "kb_h" / "hnsw.usearch").is_file()
    reopened = EmbeddedVectorStore(tmp_path, hnsw_threshold=1000)
    assert await reopened.count("kb_h") == 2990
    # The restored graph searches with Kiln's beam, not usearch's default (recall 0.88 at 100k).
    assert reopened._collections["kb_h"].hnsw.expansion_search == HNSW_EXPANSION_SEARCH
    # The graph is approximate and usearch's threads build it in no fixed order: on this
    # high-dimensional random data a rare build ranks another record first (CI saw it once). The
    # record itself must be among the first hits, with its exact score.
    hits = {h.id: h.score for h in await reopened.query("kb_h", vectors[100], 5)}
    assert hits.get(ids[100]) == pytest.approx(1.0, abs=1e-4)
    filtered = await reopened.query("kb_h", vectors[100], 2, allowed_ids=[ids[2000], ids[2001]])
    assert {h.id for h in filtered} == {ids[2000], ids[2001]}


async def test_lost_files_and_bad_input(tmp_path) -> None:
    store = EmbeddedVectorStore(tmp_path)
    await store.ensure_index("kb_l", 4)
    await store.upsert("kb_l", ["a"], np.ones((1, 4)), [{}])
    await store.flush("kb_l")
    (tmp_path / "kb_l" / "vectors.npy").write_bytes(b"garbage")
    assert await EmbeddedVectorStore(tmp_path).count("kb_l") is None  # the caller rebuilds from the DB
    with pytest.raises(VectorStoreError) as raised:
        await store.upsert("kb_l", ["b"], np.ones((1, 5)), [{}])
    assert raised.value.code == "vector_dimension_mismatch"
    with pytest.raises(VectorStoreError):
        await store.query("kb_l", np.ones(3), 1)
    with pytest.raises(VectorStoreError):
        await store.ensure_index("../etc", 4)
    await store.drop_index("kb_l")
    assert not (tmp_path / "kb_l").exists() and await store.count("kb_l") is None


@pytest.mark.parametrize("name", ["kb\n", "", "../kb", "kb h", "k" * 121, "kb\u00e9"])
def test_index_names_every_store_refuses(name: str) -> None:
    """One rule names an index in every store: a trailing newline (which `^...$` let through) or a
    path, space, non-ASCII letter or 121 characters is refused before any store touches it."""
    from kiln.providers.vectors import check_index_name
    from kiln.providers.vectors.pgvector import table_name
    from kiln.providers.vectors.qdrant import _path
    from kiln.providers.vectors.weaviate import class_name

    for check in (check_index_name, table_name, _path, class_name):
        with pytest.raises(VectorStoreError) as err:
            check(name)
        assert err.value.code == "vector_index_invalid"
    assert check_index_name("kb_1-a") == "kb_1-a"
