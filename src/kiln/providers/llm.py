"""OpenAI-compatible chat, streaming chat, embeddings and model listing.

Speaks the `/v1` protocol that vLLM, llama.cpp's server, Ollama (`http://host:11434/v1`) and the
cloud APIs share: `POST {base}/chat/completions` (with `stream: true` the answer is SSE `data:`
chunks carrying `choices[0].delta.content`, ending with `data: [DONE]`), `POST {base}/embeddings`,
`GET {base}/models`. For o-series and gpt-5 model names the output budget is sent as
`max_completion_tokens` and sampling knobs they refuse (temperature, top_p) are left out.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import httpx

from kiln.providers.config import ProviderSettings
from kiln.providers.http import (
    OfflineGuard,
    ProviderClient,
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    shared_client,
)

REASONING_PREFIXES = ("gpt-5", "o1", "o3", "o4")
Message = dict[str, Any]


def uses_completion_tokens(model: str) -> bool:
    """True for model names that take `max_completion_tokens` and no temperature (o1/o3/o4, gpt-5)."""
    base = model.rsplit("/", 1)[-1].lower()
    return base.startswith(REASONING_PREFIXES)


@dataclass(slots=True)
class ChatResult:
    content: str
    model: str
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(slots=True)
class ChatDelta:
    content: str
    model: str | None = None
    finish_reason: str | None = None


@dataclass(slots=True)
class Embeddings:
    vectors: list[list[float]]
    model: str
    usage: dict[str, Any] = field(default_factory=dict)


def _text_of(content: Any) -> str:
    """Message content as text: a string, or the text parts of a content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


class LLMClient:
    """Chat with one OpenAI-compatible server. `model=None` in a call means the default model."""

    def __init__(self, http: ProviderClient, default_model: str | None = None):
        self.http = http
        self.default_model = default_model

    @classmethod
    def from_settings(
        cls,
        settings: ProviderSettings,
        *,
        offline_guard: OfflineGuard | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        shared: bool = True,
    ) -> LLMClient:
        """The client `KILN_LLM_URL` names; `ProviderNotConfigured` when it is unset.

        With `shared=True` the HTTP client (and its connection pool) is reused per event loop.
        """
        if not settings.llm_url:
            raise ProviderNotConfigured("llm", "KILN_LLM_URL")
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        origin = None if settings.llm_origin == "auto" else settings.llm_origin

        def make() -> ProviderClient:
            return ProviderClient(
                settings.llm_url or "",
                name="llm",
                origin=origin,
                api_key=key,
                timeout=settings.llm_timeout_seconds,
                connect_timeout=settings.provider_connect_timeout_seconds,
                max_retries=settings.provider_max_retries,
                offline_guard=offline_guard,
                transport=transport,
            )

        if shared and transport is None:
            http = shared_client(
                (
                    "llm",
                    settings.llm_url,
                    key,
                    origin,
                    settings.llm_timeout_seconds,
                    settings.provider_connect_timeout_seconds,
                    settings.provider_max_retries,
                    offline_guard,
                ),
                make,
            )
        else:
            http = make()
        return cls(http, settings.llm_model)

    def resolve_model(self, model: str | None) -> str:
        chosen = model or self.default_model
        if not chosen:
            raise ProviderNotConfigured("llm", "KILN_LLM_MODEL")
        return chosen

    def chat_body(
        self,
        messages: list[Message],
        *,
        model: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        extra: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> dict[str, Any]:
        name = self.resolve_model(model)
        body: dict[str, Any] = {"model": name, "messages": messages}
        reasoning = uses_completion_tokens(name)
        if max_tokens is not None:
            body["max_completion_tokens" if reasoning else "max_tokens"] = max_tokens
        if not reasoning:
            if temperature is not None:
                body["temperature"] = temperature
            if top_p is not None:
                body["top_p"] = top_p
        if stop:
            body["stop"] = stop
        if extra:
            body.update({k: v for k, v in extra.items() if k not in body})
        if stream:
            body["stream"] = True
        return body

    async def chat(self, messages: list[Message], **options: Any) -> ChatResult:
        body = self.chat_body(messages, **options)
        started = time.perf_counter()
        data = await self.http.json("POST", "/chat/completions", json=body)
        try:
            choice = data["choices"][0]
            content = _text_of(choice["message"].get("content"))
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderProtocolError("llm", "chat answer without choices[0].message") from None
        return ChatResult(
            content=content,
            model=str(data.get("model") or body["model"]),
            finish_reason=choice.get("finish_reason"),
            usage=data.get("usage") or {},
            seconds=time.perf_counter() - started,
        )

    async def chat_stream(self, messages: list[Message], **options: Any) -> AsyncIterator[ChatDelta]:
        """Yield the content deltas of a streamed answer as they arrive."""
        async for deltas in self.chat_stream_reads(messages, **options):
            for delta in deltas:
                yield delta

    async def chat_stream_reads(self, messages: list[Message], **options: Any) -> AsyncIterator[list[ChatDelta]]:
        """The deltas of a streamed answer, one list per read from the connection: what arrived
        together can be forwarded together (one write instead of one per delta) without waiting
        for anything that has not arrived."""
        body = self.chat_body(messages, stream=True, **options)
        async with self.http.stream("POST", "/chat/completions", json=body) as response:
            # Lines split from the raw bytes: httpx's text decoding and line splitting cost more
            # per token than the JSON parse itself.
            pending = b""
            # An uncompressed body is read as it comes: httpx's decoder and two chunkers would be
            # pass-throughs, two generator layers resumed on every read.
            chunks = response.aiter_bytes() if "content-encoding" in response.headers else aiter(response.stream)
            async for data in chunks:
                lines = (pending + data).split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_SSE_LINE:  # a server that never ends its line must not fill memory
                    raise ProviderProtocolError("llm", f"stream line over {MAX_SSE_LINE} bytes without an end")
                deltas = []
                for line in lines:
                    if not line.startswith(b"data:"):  # the blank line ending each event, comments
                        continue
                    try:
                        delta = _parse_sse_line(line.rstrip(b"\r"))
                    except ProviderError:
                        if deltas:  # what came before the failing line is still delivered
                            yield deltas
                        raise
                    if delta is _DONE:
                        if deltas:
                            yield deltas
                        await _drain(chunks)
                        return
                    if delta is not None:
                        deltas.append(delta)
                if deltas:
                    yield deltas
            if pending.strip():
                delta = _parse_sse_line(pending.rstrip(b"\r"))
                if delta is not None and delta is not _DONE:
                    yield [delta]

    async def embed(self, inputs: list[str], *, model: str | None = None) -> Embeddings:
        name = self.resolve_model(model)
        data = await self.http.json("POST", "/embeddings", json={"model": name, "input": inputs})
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError):
            raise ProviderProtocolError("llm", "embeddings answer without data[].embedding") from None
        if len(vectors) != len(inputs):
            raise ProviderProtocolError("llm", f"{len(vectors)} embeddings for {len(inputs)} inputs")
        return Embeddings(vectors=vectors, model=str(data.get("model") or name), usage=data.get("usage") or {})

    async def models(self) -> list[dict[str, Any]]:
        data = await self.http.json("GET", "/models")
        rows = data.get("data") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ProviderProtocolError("llm", "models answer without a data list")
        return [row for row in rows if isinstance(row, dict) and "id" in row]


_DONE = ChatDelta(content="", finish_reason="[DONE]")
MAX_SSE_LINE = 4 * 1024 * 1024  # one event's data line; a token delta is tens of bytes
DRAIN_SECONDS = 0.05


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (normally just the body's end, in the same packet), so the
    connection goes back to the pool: closing a response mid-body closes its connection, and
    every turn then paid a new TCP connection before its first token. Bounded: a server that
    keeps the body open after `[DONE]` costs at most `DRAIN_SECONDS` and its connection."""
    with suppress(TimeoutError, httpx.HTTPError):
        await asyncio.wait_for(_read_all(chunks), DRAIN_SECONDS)


async def _read_all(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


_raw_decode = json.JSONDecoder().raw_decode


def _parse_sse_line(line: str | bytes) -> ChatDelta | None:
    """One SSE line → a delta, `_DONE`, or None (comments, blank lines, events without content)."""
    if isinstance(line, str):
        line = line.encode()
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return _DONE
    try:
        # SSE is UTF-8; the decoder's own scan, once per token: json.loads(bytes) first guesses the
        # encoding and goes through two more Python layers, which cost more than the scan itself.
        text = payload.decode()
        chunk, end = _raw_decode(text)
        if end != len(text):
            raise ValueError("text after the JSON value")
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise ProviderProtocolError("llm", "stream chunk is not JSON") from None
    if not isinstance(chunk, dict):
        raise ProviderProtocolError("llm", "stream chunk is not an object")
    if "error" in chunk:
        err = chunk["error"]
        message = err.get("message") if isinstance(err, dict) else str(err)
        raise ProviderError("llm", f"stream error: {str(message)[:300]}")
    choices = chunk.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    content = _text_of((choice.get("delta") or {}).get("content"))
    finish = choice.get("finish_reason")
    if not content and not finish:
        return None
    return ChatDelta(content=content, model=chunk.get("model"), finish_reason=finish)


async def collect(stream: AsyncIterator[ChatDelta], on_delta: Callable[[str], None] | None = None) -> str:
    """Join a stream's deltas into the full answer."""
    parts = []
    async for delta in stream:
        parts.append(delta.content)
        if on_delta is not None and delta.content:
            on_delta(delta.content)
    return "".join(parts)
