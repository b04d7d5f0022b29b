"""OpenAI-compatible chat (plain and streamed), embeddings and models against the fake server."""

from __future__ import annotations

import pytest

from kiln.providers.config import ProviderSettings
from kiln.providers.http import ProviderError, ProviderNotConfigured, ProviderProtocolError
from kiln.providers.llm import LLMClient, _parse_sse_line, collect, uses_completion_tokens
from tests.fakes.openai_llm import FakeLLM, Reply


def llm(fake: FakeLLM, **kw: object) -> LLMClient:
    settings = ProviderSettings(_env_file=None, llm_url=fake.url, llm_model="fake-chat", provider_max_retries=0, **kw)  # type: ignore[arg-type]
    return LLMClient.from_settings(settings, shared=False)


async def test_chat_sends_options_and_reads_the_answer(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="Hallo Welt", model="served-model"))
    client = llm(fake_llm)
    result = await client.chat(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
    )
    await client.http.aclose()
    assert result.content == "Hallo Welt" and result.model == "served-model" and result.finish_reason == "stop"
    sent = fake_llm.chat_calls[0]["json"]
    assert sent["model"] == "fake-chat" and sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["max_tokens"] == 50 and "stream" not in sent
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


@pytest.mark.parametrize("model", ["gpt-5-mini", "o1", "o3-mini", "o4-mini", "openrouter/openai/o3"])
async def test_reasoning_models_get_max_completion_tokens(fake_llm: FakeLLM, model: str) -> None:
    client = llm(fake_llm)
    await client.chat([{"role": "user", "content": "x"}], model=model, max_tokens=20, temperature=0.5)
    await client.http.aclose()
    sent = fake_llm.chat_calls[0]["json"]
    assert sent["max_completion_tokens"] == 20 and "max_tokens" not in sent and "temperature" not in sent


def test_uses_completion_tokens() -> None:
    assert not uses_completion_tokens("llama3.2:1b")
    assert not uses_completion_tokens("gpt-4o")
    assert not uses_completion_tokens("ollama/mistral")
    assert uses_completion_tokens("GPT-5")


async def test_stream_yields_deltas(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(pieces=["Ein ", "surrealer ", "Traum"]))
    client = llm(fake_llm)
    seen: list[str] = []
    text = await collect(client.chat_stream([{"role": "user", "content": "x"}]), seen.append)
    await client.http.aclose()
    assert text == "Ein surrealer Traum" and seen == ["Ein ", "surrealer ", "Traum"]
    assert fake_llm.chat_calls[0]["json"]["stream"] is True


async def test_stream_error_chunk_raises(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(pieces=["a"], stream_error="model crashed"))
    client = llm(fake_llm)
    with pytest.raises(ProviderError, match="model crashed"):
        await collect(client.chat_stream([{"role": "user", "content": "x"}]))
    await client.http.aclose()


async def test_stream_http_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=400, content="context too long"))
    client = llm(fake_llm)
    with pytest.raises(ProviderError, match="context too long") as err:
        await collect(client.chat_stream([{"role": "user", "content": "x"}]))
    await client.http.aclose()
    assert err.value.status == 400


async def test_bad_shape_is_protocol_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(body=b'{"choices": []}'))
    client = llm(fake_llm)
    with pytest.raises(ProviderProtocolError):
        await client.chat([{"role": "user", "content": "x"}])
    await client.http.aclose()


async def test_embeddings_and_models(fake_llm: FakeLLM) -> None:
    client = llm(fake_llm)
    result = await client.embed(["a", "b", "a"], model="fake-embed")
    models = await client.models()
    await client.http.aclose()
    assert len(result.vectors) == 3 and len(result.vectors[0]) == fake_llm.dimensions
    assert result.vectors[0] == result.vectors[2] != result.vectors[1]
    assert [m["id"] for m in models] == ["fake-chat", "fake-embed"]


def test_unset_settings_name_the_variable() -> None:
    with pytest.raises(ProviderNotConfigured, match="KILN_LLM_URL"):
        LLMClient.from_settings(ProviderSettings(_env_file=None, llm_url=None))  # type: ignore[call-arg]
    client = LLMClient.from_settings(
        ProviderSettings(_env_file=None, llm_url="http://127.0.0.1:1/v1"),  # type: ignore[call-arg]
        shared=False,
    )
    with pytest.raises(ProviderNotConfigured, match="KILN_LLM_MODEL"):
        client.resolve_model(None)


async def test_stream_lines_split_across_reads_and_multibyte_text_survive() -> None:
    """The relay splits SSE lines from raw bytes: a line (even a UTF-8 character) cut between two
    reads, CRLF endings and a last line without a newline still give every delta whole."""
    import json

    import httpx

    from kiln.providers.http import ProviderClient

    def chunk(text: str, finish: str | None = None) -> bytes:
        body = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\r\n\r\n".encode()

    raw = b": comment\n\n" + chunk("héllo ") + chunk("wörld 😀") + chunk("", "stop") + b"data: [DONE]"
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]  # cuts lines and characters apart

    async def body():
        for piece in pieces:
            yield piece

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body()))
    client = LLMClient(ProviderClient("http://llm.local/v1", name="llm", transport=transport), "m")
    deltas = [d async for d in client.chat_stream([{"role": "user", "content": "hi"}])]
    assert [d.content for d in deltas] == ["héllo ", "wörld 😀", ""]
    assert deltas[-1].finish_reason == "stop"


async def test_stream_line_without_end_is_refused_not_buffered(monkeypatch) -> None:
    """A server that sends one endless line gets a protocol error once the line passes the bound;
    the relay does not keep reading it into memory."""
    import httpx

    from kiln.providers import llm as llm_module
    from kiln.providers.http import ProviderClient

    monkeypatch.setattr(llm_module, "MAX_SSE_LINE", 64 * 1024)
    sent = 0

    async def body():
        nonlocal sent
        yield b'data: {"choices": [{"delta": {"content": "'
        while sent < 10 * 1024 * 1024:
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body()))
    client = LLMClient(ProviderClient("http://llm.local/v1", name="llm", transport=transport), "m")
    with pytest.raises(ProviderProtocolError, match="without an end"):
        [d async for d in client.chat_stream([{"role": "user", "content": "hi"}])]
    assert sent < 1024 * 1024


async def test_stream_reads_group_the_deltas_that_arrived_together() -> None:
    """One list per read from the connection (the relay writes each list in one write), and the
    deltas read before an error line are still delivered before the error."""
    import httpx

    from kiln.providers.http import ProviderClient

    def chunk(text: str) -> bytes:
        return b'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % text.encode()

    reads = [
        chunk("a") + chunk("b"),  # two events in one read
        b": keep-alive\n\n" + chunk("c")[:20],  # a comment and half an event
        chunk("c")[20:] + chunk("d") + b'data: {"error": {"message": "model crashed"}}\n\n',
    ]

    async def body():
        for read in reads:
            yield read

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body()))
    client = LLMClient(ProviderClient("http://llm.local/v1", name="llm", transport=transport), "m")
    got: list[list[str]] = []
    with pytest.raises(ProviderError, match="model crashed"):
        async for deltas in client.chat_stream_reads([{"role": "user", "content": "hi"}]):
            got.append([d.content for d in deltas])
    assert got == [["a", "b"], ["c", "d"]]


async def test_a_compressed_stream_is_decoded() -> None:
    """An uncompressed body is read raw; a compressed one still goes through httpx's decoder."""
    import gzip

    import httpx

    from kiln.providers.http import ProviderClient

    raw = b'data: {"choices": [{"delta": {"content": "zipped"}}]}\n\ndata: [DONE]\n\n'
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=gzip.compress(raw))
    )
    client = LLMClient(ProviderClient("http://llm.local/v1", name="llm", transport=transport), "m")
    assert await collect(client.chat_stream([{"role": "user", "content": "hi"}])) == "zipped"


@pytest.mark.parametrize(
    "line",
    [b'data: {"choices":[]} trailing', b"data: \xff\xfe{}", b'data: {"choices":', b"data: 5", b"data: {}{}"],
)
def test_a_stream_line_that_is_not_one_utf8_json_object_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProviderProtocolError):
        _parse_sse_line(line)


def test_a_stream_line_is_parsed_as_utf8_json() -> None:
    delta = _parse_sse_line('data: {"choices":[{"delta":{"content":"é 😀"},"finish_reason":null}]} '.encode())
    assert delta is not None and delta.content == "é 😀" and delta.finish_reason is None
