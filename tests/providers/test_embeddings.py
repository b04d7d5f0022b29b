"""The embeddings port: the local all-MiniLM-L6-v2 encoder (onnxruntime + tokenizers) and the
OpenAI-compatible adapter against a loopback server speaking `/embeddings`."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from kiln.providers import embeddings as emb
from kiln.providers.embeddings import (
    EmbeddingsError,
    LocalSentenceEncoder,
    OpenAICompatibleEmbeddings,
    length_batches,
    packaged_model_dir,
    parse_embeddings_response,
)


@pytest.fixture(scope="module")
def encoder() -> LocalSentenceEncoder:
    return LocalSentenceEncoder()


def test_constructing_loads_nothing() -> None:
    before = dict(emb._LOADED)
    encoder = LocalSentenceEncoder(batch_size=4)
    assert encoder.dimension == 384 and encoder.model_id.endswith("all-MiniLM-L6-v2")
    assert before == emb._LOADED  # lazily: the app never loads the model at start-up


def test_batches_are_cut_where_padding_wastes() -> None:
    cut = [list(batch) for batch in length_batches([29, 30, 31, 150, 200, 200, 200, 202], 3)]
    assert cut == [[0, 1, 2], [3], [4, 5, 6], [7]]  # short tails never pad to a full chunk's length
    assert [len(batch) for batch in length_batches([200] * 70, 32)] == [32, 32, 6]
    assert length_batches([], 32) == []


def test_batching_and_padding_do_not_change_vectors(encoder: LocalSentenceEncoder) -> None:
    texts = [
        "short",
        "a medium sentence about bees and honey " * 3,
        "x",
        "long text on volcanoes " * 40,
        "another short one",
        "a medium sentence about bees and honey " * 3,
    ]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([text])[0] for text in texts])
    assert np.allclose(together, alone, atol=1e-5)
    assert np.allclose(together[1], together[5], atol=1e-6)
    loaded = next(iter(emb._LOADED.values()))
    assert loaded.encoder_tokenizer.padding is None  # padded per batch by encode, after grouping


def test_real_limit_replaces_the_baked_in_truncation(encoder: LocalSentenceEncoder) -> None:
    shipped = json.loads((packaged_model_dir() / "tokenizer.json").read_text())
    assert shipped["truncation"]["max_length"] == 128  # what the package bakes in
    assert encoder.max_tokens == 256
    tokenizer = encoder.tokenizer()
    long_text = " ".join(f"word{i}" for i in range(600))
    assert len(tokenizer.encode(long_text).ids) > 600  # the chunking tokenizer never truncates
    ids = tokenizer.encode(long_text, add_special_tokens=False).ids
    head_254 = tokenizer.decode(ids[:254])
    head_120 = tokenizer.decode(ids[:120])
    vectors = encoder.encode([long_text, head_254, head_120])
    assert float(vectors[0] @ vectors[1]) > 0.999  # truncated at 256 (254 + [CLS] + [SEP])
    assert float(vectors[0] @ vectors[2]) < 0.999  # not at 128


def test_vectors_unit_ordered_and_semantic(encoder: LocalSentenceEncoder) -> None:
    texts = [
        "How do I reset my password?",
        "A cat sat on the warm windowsill.",
        "Steps to recover a forgotten account password",
        "x " * 50,
        "",
    ]
    vectors = encoder.encode(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:4], axis=1), 1.0, atol=1e-4)
    # Batched with length sorting == one by one, in input order.
    singles = np.stack([encoder.encode([text])[0] for text in texts])
    assert np.abs(vectors - singles).max() < 1e-4
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1] + 0.3


def test_matches_sentence_transformers(encoder: LocalSentenceEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(packaged_model_dir()), device="cpu")
    texts = ["Offline embeddings with onnxruntime.", "word " * 400, "Kiln serves five contracts."]
    reference = model.encode(texts, normalize_embeddings=True)
    assert np.abs(encoder.encode(texts) - reference).max() < 1e-4


async def test_async_embed(encoder: LocalSentenceEncoder) -> None:
    vectors = await encoder.embed(["one", "two"])
    assert vectors.shape == (2, 384)


async def test_a_repeated_query_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = LocalSentenceEncoder()
    calls: list[list[str]] = []
    real = encoder.encode

    def counted(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return real(texts)

    monkeypatch.setattr(encoder, "encode", counted)
    first = await encoder.embed(["what about its price?"])
    first[0, 0] = 42.0  # the caller's copy: the cached vector must not change with it
    again = await encoder.embed(["what about its price?"])
    assert calls == [["what about its price?"]]
    assert np.array_equal(again, real(["what about its price?"]))
    await encoder.embed(["another question"])
    await encoder.embed(["what about its price?", "another question"])  # a batch is always encoded
    assert calls[1:] == [["another question"], ["what about its price?", "another question"]]


async def test_the_query_cache_keeps_the_most_recent(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = LocalSentenceEncoder()
    monkeypatch.setattr(emb, "QUERY_CACHE_SIZE", 2)
    calls: list[str] = []
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(texts[0]) or np.ones((1, 384), np.float32))
    for text in ("a", "b", "a", "c", "a", "b"):  # "b" is the least recent when "c" comes in
        await encoder.embed([text])
    assert calls == ["a", "b", "c", "b"]


async def test_a_prefetched_query_is_encoded_once_and_taken_by_embed(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = LocalSentenceEncoder()
    started, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []
    real = encoder.encode

    def slow(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        started.set()
        release.wait(10)
        return real(texts)

    monkeypatch.setattr(encoder, "encode", slow)
    encoder.prefetch("how do bees make honey?")
    encoder.prefetch("how do bees make honey?")  # already under way: not started twice
    assert await asyncio.to_thread(started.wait, 10)
    waiting = asyncio.ensure_future(encoder.embed(["how do bees make honey?"]))
    cancelled = asyncio.ensure_future(encoder.embed(["how do bees make honey?"]))
    await asyncio.sleep(0.05)
    cancelled.cancel()  # a waiter that goes away leaves the shared run to the others
    release.set()
    vector = await waiting
    assert calls == [["how do bees make honey?"]]
    assert np.array_equal(vector, real(["how do bees make honey?"]))
    assert not encoder._pending and "how do bees make honey?" in encoder._queries
    encoder.prefetch("how do bees make honey?")  # cached: nothing to run
    await encoder.embed(["how do bees make honey?"])
    assert calls == [["how do bees make honey?"]]


async def test_a_failed_prefetch_is_raised_by_the_embed_that_takes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = LocalSentenceEncoder()

    def broken(texts: list[str]) -> np.ndarray:
        raise EmbeddingsError("embeddings_invalid_vectors", "broken")

    monkeypatch.setattr(encoder, "encode", broken)
    encoder.prefetch("q")
    with pytest.raises(EmbeddingsError):
        await encoder.embed(["q"])
    encoder.prefetch("never taken")  # its failure is retrieved when it settles: no warning, no cache entry
    await asyncio.sleep(0.1)
    assert not encoder._pending and not encoder._queries


class _Embeddings(BaseHTTPRequestHandler):
    mode = "ok"
    seen: list[dict] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("authorization"), **body})
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), float(i), 1.0]}
            for i, text in enumerate(body["input"])
        ]
        data.reverse()  # servers may answer out of order: the adapter must re-order by index
        if self.mode == "nan":
            data[0]["embedding"][0] = float("nan")
        if self.mode == "short":
            data = data[1:]
        if self.mode == "error":
            self.send_response(503)
            self.end_headers()
            return
        raw = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def embeddings_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Embeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Embeddings.mode = "ok"
    _Embeddings.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


async def test_openai_compatible_reorders_and_batches(embeddings_server: str) -> None:
    adapter = OpenAICompatibleEmbeddings(embeddings_server, "bge-small", api_key="sk-test", batch_size=2)
    vectors = await adapter.embed(["a", "bbb", "cc"])
    assert vectors[:, 0].tolist() == [1.0, 3.0, 2.0]
    assert adapter.dimension == 3
    assert [call["input"] for call in _Embeddings.seen] == [["a", "bbb"], ["cc"]]
    assert _Embeddings.seen[0]["path"] == "/v1/embeddings" and _Embeddings.seen[0]["auth"] == "Bearer sk-test"


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("nan", "embeddings_invalid_vectors"),
        ("short", "embeddings_invalid_response"),
        ("error", "embeddings_provider_error"),
    ],
)
async def test_openai_compatible_refuses_bad_answers(embeddings_server: str, mode: str, code: str) -> None:
    _Embeddings.mode = mode
    with pytest.raises(EmbeddingsError) as raised:
        await OpenAICompatibleEmbeddings(embeddings_server, "m").embed(["a", "b"])
    assert raised.value.code == code


async def test_openai_compatible_pinned_dimension(embeddings_server: str) -> None:
    with pytest.raises(EmbeddingsError) as raised:
        await OpenAICompatibleEmbeddings(embeddings_server, "m", dimension=384).embed(["a"])
    assert raised.value.code == "embeddings_dimension_mismatch"


async def test_unreachable_server() -> None:
    with pytest.raises(EmbeddingsError) as raised:
        await OpenAICompatibleEmbeddings("http://127.0.0.1:9", "m", timeout=2).embed(["a"])
    assert raised.value.code == "embeddings_provider_unreachable"


def test_parse_refuses_duplicate_indexes() -> None:
    payload = {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]}
    with pytest.raises(EmbeddingsError):
        parse_embeddings_response(payload, 2, None)
