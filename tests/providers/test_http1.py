"""The lean HTTP/1.1 pool behind `ProviderClient` for plain-http servers: what it sends, how it
reads every way an answer can end, keep-alive and its limits, and the same errors as httpx."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from kiln.providers import http1
from kiln.providers.http import ProviderClient, ProviderTimeout, ProviderUnavailable

Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw HTTP/1.1 server scripted per test: `handler(head, body, writer)` answers each request."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                await self.handler(head, body, writer)
                if writer.is_closing():
                    return
        except asyncio.CancelledError:  # the test ended while this handler waited
            return
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        listener.close()


def answer(body: bytes, *, status: str = "200 OK", headers: str = "Content-Type: application/json\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


async def ok(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(b'{"ok": true}'))
    await writer.drain()


def head_lines(head: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    first, *rest = head.strip().split(b"\r\n")
    return first, {name.lower(): value.strip() for name, value in (line.split(b":", 1) for line in rest)}


async def test_plain_http_uses_the_pool_and_sends_what_httpx_would() -> None:
    async with serving(ok) as server, ProviderClient(server.url, name="t", api_key="sk-1") as http:
        assert http._wire is not None
        data = await http.json("POST", "/chat/completions", json={"a": "ü", "b": [1, 2]}, params={"x": True, "y": None})
    assert data == {"ok": True}
    ((head, body),) = server.requests
    first, headers = head_lines(head)
    assert first == b"POST /v1/chat/completions?x=true&y= HTTP/1.1"
    assert headers[b"host"] == server.url.removeprefix("http://").removesuffix("/v1").encode()
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"authorization"] == b"Bearer sk-1"
    assert int(headers[b"content-length"]) == len(body)
    assert body == json.dumps({"a": "ü", "b": [1, 2]}, ensure_ascii=False, separators=(",", ":")).encode()
    assert body == httpx.Request("POST", "http://x", json={"a": "ü", "b": [1, 2]}).read()


async def test_https_transport_and_unusual_arguments_go_through_httpx() -> None:
    assert ProviderClient("https://api.example.com/v1", name="t")._wire is None
    assert ProviderClient("http://user:pw@127.0.0.1:1/v1", name="t")._wire is None
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={"mock": True}))
    async with ProviderClient("http://127.0.0.1:1/v1", name="t", transport=mock) as http:
        assert http._wire is None and await http.json("GET", "/models") == {"mock": True}
    async with serving(ok) as server, ProviderClient(server.url, name="t") as http:
        assert http._wire is not None
        for path, kwargs in [
            ("/a b", {}),  # httpx percent-encodes
            ("/x/../models", {}),  # httpx removes dot segments
            (server.url + "/models", {}),  # an absolute URL
            ("/upload", {"files": {"f": b"1"}}),
            ("/models", {"headers": {"Content-Type": "text/plain"}}),  # replaces a header
        ]:
            assert http._wire.prepare("POST", path, kwargs) is None
            assert await http.json("POST", path, **kwargs) == {"ok": True}
    first, _ = head_lines(server.requests[0][0])
    assert first == b"POST /v1/a%20b HTTP/1.1"
    assert head_lines(server.requests[1][0])[0] == b"POST /v1/models HTTP/1.1"
    assert head_lines(server.requests[2][0])[0] == b"POST /v1/models HTTP/1.1"


async def test_keep_alive_reuses_one_connection_and_a_closed_one_is_replaced() -> None:
    async def close_after_second(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        await ok(head, body, writer)
        if len(server.requests) == 2:
            writer.close()

    async with serving(close_after_second) as server, ProviderClient(server.url, name="t", max_retries=0) as http:
        for _ in range(2):
            await http.json("GET", "/models")
        await asyncio.sleep(0.05)  # the server's close reaches the idle connection
        await http.json("GET", "/models")
    assert len(server.requests) == 3 and server.connections == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",  # delimited by the close
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
    ],
    ids=["chunked", "until-close", "http-1.0"],
)
async def test_every_way_a_body_can_end(raw: bytes) -> None:
    async def handler(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()
        if b"chunked" not in raw:
            writer.close()

    async with serving(handler) as server, ProviderClient(server.url, name="t") as http:
        for _ in range(2):  # the second call needs a good connection again
            assert (await http.request("GET", "/x")).content == b"hello world"


async def test_a_compressed_answer_is_decoded() -> None:
    async def handler(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(gzip.compress(b'{"z": 1}'), headers="Content-Encoding: gzip\r\n"))

    async with serving(handler) as server, ProviderClient(server.url, name="t") as http:
        assert await http.json("GET", "/x") == {"z": 1}


async def test_a_stream_arrives_piece_by_piece() -> None:
    release = asyncio.Event()

    async def handler(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"7\r\nsecond\n\r\n0\r\n\r\n")

    async with serving(handler) as server, ProviderClient(server.url, name="t") as http:
        async with http.stream("POST", "/chat/completions", json={}) as response:
            chunks = response.aiter_bytes()
            assert await anext(chunks) == b"first\n"  # before the rest is even sent
            release.set()
            assert [c async for c in chunks] == [b"second\n"]
        assert response.request.url == httpx.URL(server.url + "/chat/completions")
    assert server.connections == 1


async def test_disconnects_and_malformed_answers_are_unavailable_after_the_retries() -> None:
    async def hang_up(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/mid" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
            await writer.drain()
        elif b"/garbage" in head:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
        writer.close()

    async with serving(hang_up) as server, ProviderClient(server.url, name="t", max_retries=1, backoff=0.01) as http:
        with pytest.raises(ProviderUnavailable, match="RemoteProtocolError"):
            await http.request("GET", "/none")
        assert len(server.requests) == 2  # retried once: nothing was answered
        for path in ("/mid", "/garbage"):
            with pytest.raises(ProviderUnavailable):
                await http.request("GET", path)


async def _send_once(url: str, path: str) -> httpx.Response:
    pool = http1.Pool(url, timeout=5, connect_timeout=1, max_connections=1)
    try:
        response = await pool.send("GET", *pool.prepare("GET", path, {}))
        await response.aread()
        return response
    finally:
        pool.close()


async def test_answer_headers_are_bounded_in_size_and_count() -> None:
    """httptools bounds neither; a server must not make the client hold headers without end."""
    endless_value_sent = asyncio.Event()

    async def headers(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/many" in head:  # one field over the count
            fields = "".join(f"X-F{i}: v\r\n" for i in range(http1.MAX_HEADERS + 1))
            writer.write(answer(b"{}", headers=fields))
        elif b"/large" in head:  # two fields of 40 KB: over the size, complete in one write
            fields = "".join(f"X-L{i}: {'a' * 40_000}\r\n" for i in range(2))
            writer.write(answer(b"{}", headers=fields))
        elif b"/endless" in head:  # a value that never ends, sent piece by piece
            writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
            for _ in range(100):
                writer.write(b"a" * 4096)
                await writer.drain()
                await asyncio.sleep(0)
            endless_value_sent.set()
            await asyncio.sleep(5)
        else:  # just within both bounds
            fields = "".join(f"X-F{i}: {'b' * 600}\r\n" for i in range(http1.MAX_HEADERS - 1))
            writer.write(answer(b"{}", headers=fields))
        await writer.drain()

    async with serving(headers) as server:
        within = await _send_once(server.url, "/within")
        assert within.status_code == 200 and len(within.headers) == http1.MAX_HEADERS
        for path in ("/many", "/large", "/endless"):
            with pytest.raises(httpx.RemoteProtocolError, match="answer headers over"):
                await asyncio.wait_for(_send_once(server.url, path), 4)  # fails at the bound, not by timeout
        assert not endless_value_sent.is_set()  # the client gave up long before the server stopped
        async with ProviderClient(server.url, name="t", max_retries=0) as http:
            with pytest.raises(ProviderUnavailable, match="RemoteProtocolError"):
                await http.request("GET", "/many")


async def test_read_timeout_and_a_cancelled_call_leave_no_broken_connection() -> None:
    async def slow(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/slow" in head:
            await asyncio.sleep(0.5)
        await ok(head, body, writer)

    async with serving(slow) as server, ProviderClient(server.url, name="t", timeout=0.1, max_retries=3) as http:
        with pytest.raises(ProviderTimeout):
            await http.request("GET", "/slow")
        assert len(server.requests) == 1  # a read timeout is not retried
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(http.request("GET", "/slow"), 0.05)
        assert await http.json("GET", "/fast") == {"ok": True}  # on a fresh connection
    assert server.connections == 3


async def test_each_read_of_a_stream_has_the_whole_timeout_from_its_own_start() -> None:
    """The connection keeps one timer across reads: a stream whose pieces come 0.12 s apart
    outlives a 0.2 s timeout many times over (the timer armed by the first read re-arms for the
    later reads' deadlines), and a read that then gets nothing still times out, not much later."""
    import time

    async def trickle(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(6):
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
            await asyncio.sleep(0.12)
        await asyncio.sleep(5)  # then silence

    async with (
        serving(trickle) as server,
        ProviderClient(server.url, name="t", timeout=0.2, max_retries=0) as http,
        http.stream("GET", "/a") as response,
    ):
        got = b""
        with pytest.raises(httpx.ReadTimeout):
            async for data in response.aiter_raw():
                got += data
                last = time.perf_counter()
        waited = time.perf_counter() - last
    assert got == b"x" * 6
    assert 0.19 <= waited < 0.6  # the silent read timed out after its own 0.2 s
    assert len(server.requests) == 1


async def test_connections_are_bounded_and_waiters_get_a_freed_one() -> None:
    in_flight = peak = 0

    async def counting(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        await ok(head, body, writer)

    async with serving(counting) as server, ProviderClient(server.url, name="t", max_connections=3) as http:
        results = await asyncio.gather(*(http.json("GET", f"/n{i}") for i in range(12)))
    assert results == [{"ok": True}] * 12
    assert peak == 3 and server.connections == 3


async def test_waiting_for_a_connection_times_out() -> None:
    async def endless(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        await writer.drain()

    async with (
        serving(endless) as server,
        ProviderClient(server.url, name="t", max_connections=1, timeout=0.2, max_retries=0) as http,
        http.stream("GET", "/a"),  # holds the only connection
    ):
        with pytest.raises(ProviderTimeout, match="PoolTimeout"):  # as through httpx
            await http.request("GET", "/b")
    assert len(server.requests) == 1


async def test_the_pool_is_much_cheaper_per_call_than_httpx() -> None:
    """The reason the pool exists: measured as CPU time per call against the same server."""
    import time

    async def cpu_per_call(http: ProviderClient) -> float:
        for _ in range(20):
            await http.json("POST", "/c", json={"m": "x"})
        start = time.process_time()
        for _ in range(200):
            await http.json("POST", "/c", json={"m": "x"})
        return time.process_time() - start

    async with serving(ok) as server:
        async with ProviderClient(server.url, name="t") as lean:
            lean_cpu = await cpu_per_call(lean)
        async with ProviderClient(server.url, name="t") as plain:
            plain._wire = None  # the httpx path
            httpx_cpu = await cpu_per_call(plain)
    # both include the in-process server's work; the pool's share is still clearly smaller
    assert lean_cpu < httpx_cpu * 0.8, (lean_cpu, httpx_cpu)


def test_query_and_headers_follow_httpx() -> None:
    params = {"a": [1, 2], "b": False, "c": "x y&z/ü", "d": None}
    assert http1._query(params).encode() == httpx.URL("http://h/", params=params).query
    assert http1._header_bytes({"X-Ok": "1"}) == b"X-Ok: 1\r\n"
    assert http1._header_bytes({"X-Bad": "1\r\nInjected: yes"}) is None
    assert http1._header_bytes({"Bad Name": "1"}) is None


def test_a_client_used_from_a_second_event_loop_opens_its_own_connection() -> None:
    """Connections belong to the loop that opened them (asyncio.run twice with one client)."""
    import threading

    ready, port = threading.Event(), []

    def serve() -> None:
        async def main() -> None:
            listener = await asyncio.start_server(Server(ok).serve, "127.0.0.1", 0)
            port.append(listener.sockets[0].getsockname()[1])
            ready.set()
            await asyncio.sleep(3)
            listener.close()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)
    http = ProviderClient(f"http://127.0.0.1:{port[0]}/v1", name="t", max_retries=0)
    assert asyncio.run(http.json("GET", "/a")) == {"ok": True}
    assert asyncio.run(http.json("GET", "/b")) == {"ok": True}
    assert http._wire is not None and http._wire.count == 1
