"""The shared provider HTTP client: retries, typed errors, secrets kept out, offline guard."""

from __future__ import annotations

import socket
import time

import pytest

from kiln.providers.http import (
    OfflineBlocked,
    ProviderClient,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    origin_of,
    set_offline_guard,
    shared_client,
)
from tests.fakes.openai_llm import FakeLLM, Reply

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def client(fake: FakeLLM, **kw: object) -> ProviderClient:
    kw.setdefault("backoff", 0.01)
    return ProviderClient(fake.url, name="llm", **kw)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_retries_then_succeeds(fake_llm: FakeLLM, status: int) -> None:
    fake_llm.script(Reply(status=status, content="busy"), Reply(status=status, content="busy"), "ok")
    async with client(fake_llm, max_retries=2) as http:
        data = await http.json("POST", "/chat/completions", json=BODY)
    assert data["choices"][0]["message"]["content"] == "ok"
    assert len(fake_llm.chat_calls) == 3


async def test_retries_are_bounded(fake_llm: FakeLLM) -> None:
    fake_llm.script(*[Reply(status=503, content="overloaded")] * 5)
    async with client(fake_llm, max_retries=2) as http:
        with pytest.raises(ProviderUnavailable) as err:
            await http.request("POST", "/chat/completions", json=BODY)
    assert err.value.status == 503 and "overloaded" in err.value.message
    assert len(fake_llm.chat_calls) == 3


async def test_retry_after_is_capped(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=429, headers={"Retry-After": "3600"}), "ok")
    started = time.perf_counter()
    async with client(fake_llm, max_retries=1, max_backoff=0.2) as http:
        await http.request("POST", "/chat/completions", json=BODY)
    assert time.perf_counter() - started < 1.5


async def test_client_errors_are_not_retried_and_hide_the_key(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=401, body=b'{"error":{"message":"bad key sk-secret-123"}}'))
    async with client(fake_llm, api_key="sk-secret-123") as http:
        with pytest.raises(ProviderError) as err:
            await http.request("POST", "/chat/completions", json=BODY)
    assert err.value.status == 401 and not isinstance(err.value, ProviderUnavailable)
    assert "sk-secret-123" not in str(err.value) and "***" in str(err.value)
    assert len(fake_llm.chat_calls) == 1
    assert fake_llm.chat_calls[0]["headers"]["Authorization"] == "Bearer sk-secret-123"


async def test_connect_error_is_unavailable() -> None:
    async with ProviderClient(f"http://127.0.0.1:{free_port()}/v1", name="llm", max_retries=1, backoff=0.01) as http:
        with pytest.raises(ProviderUnavailable) as err:
            await http.request("GET", "/models")
    assert err.value.status is None and "unreachable" in err.value.message


async def test_read_timeout_is_typed_and_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="slow", delay=1.0), "fast")
    async with client(fake_llm, timeout=0.2, max_retries=3) as http:
        with pytest.raises(ProviderTimeout):
            await http.request("POST", "/chat/completions", json=BODY)
    assert len(fake_llm.chat_calls) == 1


async def test_not_json_is_a_protocol_error(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(body=b"<html>"))
    async with client(fake_llm) as http:
        with pytest.raises(ProviderError, match="not JSON"):
            await http.json("POST", "/chat/completions", json=BODY)


async def test_offline_guard_blocks_cloud_only(fake_llm: FakeLLM) -> None:
    offline = {"value": True}
    async with client(fake_llm, origin="cloud", offline_guard=lambda: offline["value"]) as cloud:
        with pytest.raises(OfflineBlocked):
            await cloud.request("GET", "/models")
        assert fake_llm.calls == []
        offline["value"] = False
        await cloud.request("GET", "/models")
    async with client(fake_llm, origin="local", offline_guard=lambda: True) as local:
        await local.request("GET", "/models")
    assert len(fake_llm.calls) == 2


async def test_process_guard_async(fake_llm: FakeLLM) -> None:
    async def offline() -> bool:
        return True

    set_offline_guard(offline)
    try:
        async with client(fake_llm, origin="cloud") as cloud:
            with pytest.raises(OfflineBlocked):
                await cloud.request("GET", "/models")
    finally:
        set_offline_guard(None)


def test_origin_of() -> None:
    assert origin_of("http://127.0.0.1:11434/v1") == "local"
    assert origin_of("http://localhost:8080") == "local"
    assert origin_of("http://192.168.1.5:8188") == "local"
    assert origin_of("http://ollama:11434/v1") == "local"
    assert origin_of("http://[::1]:8000") == "local"
    assert origin_of("https://api.openai.com/v1") == "cloud"
    assert origin_of("https://8.8.8.8/v1") == "cloud"


async def test_shared_client_is_reused_per_key(fake_llm: FakeLLM) -> None:
    a = shared_client(("t", fake_llm.url), lambda: client(fake_llm))
    b = shared_client(("t", fake_llm.url), lambda: client(fake_llm))
    c = shared_client(("t", fake_llm.url, 2), lambda: client(fake_llm))
    assert a is b and a is not c
    await a.aclose()
    await c.aclose()
