"""A lean HTTP/1.1 connection pool for plain-`http://` provider servers (asyncio + httptools).

Why: through `httpx.AsyncClient` one JSON call to a loopback server cost ~0.7 ms of CPU (the
client layer: URL merging, auth/cookie/redirect/event-hook handling; httpcore's pool; h11's
pure-Python parser; anyio's cancel scopes around every socket read and write). A run of the
arted pipeline makes eight such calls to its local LLM and ComfyUI. Here a request is one
`transport.write` of pre-built bytes and the answer is parsed by httptools (C, llhttp — the
parser uvicorn already uses), which brings the call to a fraction of that.

Scope, kept narrow on purpose (`ProviderClient` sends everything else through httpx): plain
`http://` (TLS keeps httpx's certificate handling), relative paths of safe characters, bodies
given as JSON or bytes. What httpx would add and Kiln's providers do not use is absent by
design: no redirects (`ProviderClient` follows none), no cookie jar, no proxies (`trust_env` was
off), no `Accept-Encoding` offer (a compressed answer is still decoded: the response object is
an `httpx.Response` that reads its own `Content-Encoding`).

Failures are raised as the httpx exceptions they correspond to (`ConnectError`,
`ConnectTimeout`, `ReadTimeout`, `WriteTimeout`, `PoolTimeout`, `RemoteProtocolError`), so the
retry and error policy above this layer is the same for both paths. Timeouts are httpx's: one
for connecting, one for each wait for bytes (read), for the send buffer to drain (write) and for
a free connection (pool). Idle connections are dropped after `KEEPALIVE_EXPIRY` seconds or as
soon as the server closes them (the loop reports the close before the connection is reused).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

try:
    import httptools
except ImportError:  # pragma: no cover - uvicorn[standard] brings it; without it httpx does all
    httptools = None

KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpcore's default)
HIGH_WATER = 256 * 1024  # unread body bytes at which reading from the socket pauses
# An answer's status line and headers: httptools bounds neither their size nor their count, and it
# holds a header value in memory until its end arrives, so a server sending headers without end
# would fill memory. Over a bound the answer fails as a protocol error, as h11 (httpx) fails one
# whose head is over its 16 KiB buffer.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# uvloop schedules timers in whole milliseconds: a timer may fire up to half of one before its time;
# a wait whose deadline is that close counts as expired rather than re-arming for a zero delay.
TIMER_SLACK = 0.001
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
SAFE_PATH = re.compile(r"[A-Za-z0-9\-._~/!$&'()*+,;=:@?]*")
DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive", "User-Agent": "kiln"}
# headers a call may not set through this pool (it writes them itself): such a call goes to httpx
OWN_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})
SUPPORTED = frozenset({"json", "content", "params", "headers"})
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})  # HEAD answers have no body to parse


def usable_for(base_url: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether this pool can serve `base_url` (plain http, no credentials in the URL, plain headers)."""
    if httptools is None or _header_bytes(headers or {}) is None:
        return False
    parts = urlsplit(base_url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
        parts.netloc.encode("ascii")
    except (ValueError, UnicodeEncodeError):
        return False
    return parts.scheme == "http" and bool(parts.hostname) and "@" not in parts.netloc and not parts.query


def _query_value(value: Any) -> str:
    # httpx's rendering of primitives in `params`
    return "true" if value is True else "false" if value is False else "" if value is None else str(value)


def _query(params: Mapping[str, Any]) -> str:
    """`params` as httpx writes them (urlencode's quoting, lists as repeated keys)."""
    pairs = []
    for key, value in params.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            pairs.append(f"{quote_plus(str(key))}={quote_plus(_query_value(item))}")
    return "&".join(pairs)


def _header_bytes(headers: Mapping[str, str]) -> bytes | None:
    """The header lines, or None when one is not a plain `name: value` (httpx then reports it)."""
    lines = []
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str) or not HEADER_NAME.fullmatch(name):
            return None
        if any(c in value for c in "\r\n\0"):
            return None
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the httptools parser's callbacks fill the current answer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.busy = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        # One timer per connection, re-armed only when it fires early (see `wait`)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0
        self.deadline = 0.0  # when the current wait times out
        self.timeout_error: type[httpx.TimeoutException] = httpx.ReadTimeout
        self.write_paused = False
        self.reading_paused = False
        self.reset()

    def reset(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.transport.resume_reading()
        self.reading_paused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0  # bytes received while the head was incomplete
        self.header_bytes = 0  # the headers' size as sent (name, value, ": " and line end)
        self.headers_done = False
        self.until_close = False  # body delimited by the connection's end (no length, not chunked)
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.error: httpx.HTTPError | None = None

    # -------------------------------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            if not self.headers_done:
                self.head_bytes += len(data)
            self.parser.feed_data(data)
            if not self.headers_done and self.head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()
        except httptools.HttpParserUpgrade:
            self.error = httpx.RemoteProtocolError("the server switched protocols")
            self.close()
        except httptools.HttpParserError as exc:  # a callback's own error is kept
            self.error = self.error or httpx.RemoteProtocolError(f"malformed answer ({exc})")
            self.close()
        self.wake()

    def _head_too_large(self) -> None:
        self.error = httpx.RemoteProtocolError(f"answer headers over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} fields")
        raise httptools.HttpParserError("head too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.busy and not self.complete and self.error is None:
            if self.headers_done and self.until_close:
                self.complete = True
            else:
                when = "mid-answer" if self.headers_done else "without sending a response"
                self.error = httpx.RemoteProtocolError(f"server disconnected {when}")
        self.write_paused = False
        self.wake()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self.wake()

    # -------------------------------------------------------------------------- parser callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if len(self.headers) > MAX_HEADERS or self.header_bytes > MAX_HEAD_BYTES:
            self._head_too_large()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True
        names = {name.lower() for name, _ in self.headers}
        self.until_close = b"content-length" not in names and b"transfer-encoding" not in names

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -------------------------------------------------------------------------- waiting
    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def news(self, timeout: float, error: type[httpx.TimeoutException]) -> asyncio.Future[None]:
        """A future done when the protocol has news, or failed with `error` after `timeout` seconds.

        A streamed answer waits once per read (per token), so the connection keeps one timer
        instead of scheduling and cancelling one per wait (~4 µs of a paced token's ~100): it is
        left armed between waits, and when it fires before the current wait's deadline (it was
        armed by an earlier wait) it re-arms itself for that deadline. A plain function returning
        the future rather than a coroutine: one coroutine less to make and resume per token. The
        future is left in `waiter` once done (or cancelled with its waiter): waking or expiring a
        done future does nothing."""
        waiter = self.waiter = self.loop.create_future()
        self.deadline = deadline = self.loop.time() + timeout
        self.timeout_error = error
        if self.timer is None or deadline < self.timer_when:
            self._arm(deadline)
        return waiter

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_when = when
        self.timer = self.loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return  # not waiting: the next wait arms the timer again
        if self.loop.time() >= self.deadline - TIMER_SLACK:
            waiter.set_exception(self.timeout_error("no answer in time"))
        else:
            self._arm(self.deadline)

    async def read_chunk(self, timeout: float) -> bytes:
        """The body bytes received so far (waiting for some), b"" at the end of the body."""
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            await self.news(timeout, httpx.ReadTimeout)
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks.clear()
        if self.reading_paused and self.transport is not None and not self.lost:
            self.transport.resume_reading()
            self.reading_paused = False
        self.buffered = 0
        return data

    def reusable(self) -> bool:
        """The answer was received to its end (unread body bytes are dropped) and may be followed."""
        return self.complete and self.keep_alive and not self.lost and self.error is None

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()
        self.lost = True


def _expire(waiter: asyncio.Future[None], error: type[httpx.TimeoutException]) -> None:
    if not waiter.done():
        waiter.set_exception(error("no answer in time"))


class _Body(httpx.AsyncByteStream):
    """The answer's body as httpx reads it; closing it hands the connection back (or closes it)."""

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self.pool = pool
        self.conn: _Connection | None = conn

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        if conn is None:
            return
        while chunk := await conn.read_chunk(self.pool.timeout):
            yield chunk

    async def aclose(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.release(conn)


class WireResponse(httpx.Response):
    """An `httpx.Response` whose `request` is made only when asked for (building an
    `httpx.Request` — URL parsing — cost more than the rest of the call)."""

    _lazy_request: tuple[str, str]

    @property
    def request(self) -> httpx.Request:
        if self._request is None:
            self._request = httpx.Request(*self._lazy_request)
        return self._request

    @request.setter
    def request(self, value: httpx.Request) -> None:
        self._request = value


class Pool:
    """Keep-alive connections to one `http://host:port` (at most `max_connections`)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or ""
        self.port = parts.port or 80
        self.origin = f"http://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_connections = max(1, max_connections)
        own = {name.lower() for name in headers or {}}
        merged = {name: value for name, value in DEFAULT_HEADERS.items() if name.lower() not in own}
        merged.update(headers or {})
        self.header_names = OWN_HEADERS | {name.lower() for name in merged}
        self.head_tail = b"Host: " + parts.netloc.encode() + b"\r\n" + (_header_bytes(merged) or b"")
        self.idle: list[_Connection] = []
        self.count = 0  # open connections, idle ones included
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.closed = False

    # ------------------------------------------------------------------------------ requests
    def prepare(self, method: str, path: str, kwargs: Mapping[str, Any]) -> tuple[str, bytes, bytes | None] | None:
        """(target, head without the blank line, body) for a call this pool can send, else None."""
        if method not in METHODS or not kwargs.keys() <= SUPPORTED or not SAFE_PATH.fullmatch(path):
            return None
        if "/." in path or path.startswith(".") or "://" in path or path.startswith("//"):
            return None  # httpx normalises dot segments and sends an absolute URL to its own host
        target = f"{self.prefix}/{path.lstrip('/')}"
        params = kwargs.get("params")
        if params:
            target += ("&" if "?" in target else "?") + _query(params)
        extra = b""
        body: bytes | None = None
        if kwargs.get("json") is not None:
            body = json.dumps(kwargs["json"], ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            extra = b"Content-Type: application/json\r\n"
        elif kwargs.get("content") is not None:
            content = kwargs["content"]
            if not isinstance(content, bytes | str):
                return None
            body = content.encode() if isinstance(content, str) else content
        if body is not None or method in ("POST", "PUT", "PATCH"):
            extra += b"Content-Length: %d\r\n" % len(body or b"")
        if kwargs.get("headers"):
            lines = _header_bytes(kwargs["headers"])
            if lines is None or any(name.lower() in self.header_names for name in kwargs["headers"]):
                return None  # httpx lets a call replace a header (this pool only adds) and reports bad ones
            extra += lines
        head = f"{method} {target} HTTP/1.1\r\n".encode() + self.head_tail + extra + b"\r\n"
        return target, head, body

    async def send(self, method: str, target: str, head: bytes, body: bytes | None) -> WireResponse:
        """Send one request and return its answer once the headers are in (the body streams)."""
        conn = await self._acquire()
        try:
            conn.reset()
            conn.busy = True
            assert conn.transport is not None
            conn.transport.write(head + body if body else head)
            while conn.write_paused and not conn.lost:
                await conn.news(self.timeout, httpx.WriteTimeout)
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.news(self.timeout, httpx.ReadTimeout)
        except BaseException:
            self.release(conn)
            raise
        response = WireResponse(conn.status, headers=conn.headers, stream=_Body(self, conn))
        response._lazy_request = (method, self.origin + target)
        return response

    # ------------------------------------------------------------------------------ connections
    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            if self.closed:
                raise httpx.ConnectError("the client is closed")
            now = loop.time()
            while self.idle:
                conn = self.idle.pop()
                if not conn.lost and now - conn.idle_since < KEEPALIVE_EXPIRY and conn.loop is loop:
                    return conn
                with suppress(RuntimeError):  # a connection of a loop that has been closed
                    conn.close()
                self.count -= 1
            if self.count < self.max_connections:
                break
            slot = loop.create_future()
            self.waiting.append(slot)
            timer = loop.call_later(self.timeout, _expire, slot, httpx.PoolTimeout)
            try:
                await slot
            finally:
                timer.cancel()
                if slot in self.waiting:
                    self.waiting.remove(slot)
        self.count += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(lambda: _Connection(loop), self.host, self.port)
        except TimeoutError:
            self._freed()
            raise httpx.ConnectTimeout("connecting took too long") from None
        except OSError as exc:
            self._freed()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        except BaseException:
            self._freed()
            raise
        return conn

    def release(self, conn: _Connection) -> None:
        reusable = conn.reusable() and not self.closed
        conn.busy = False
        if reusable:
            conn.idle_since = asyncio.get_running_loop().time()
            self.idle.append(conn)
            self._wake_one()
        else:
            conn.close()
            self._freed()

    def _freed(self) -> None:
        self.count -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        for conn in self.idle:
            conn.close()
        self.count -= len(self.idle)
        self.idle.clear()
        for slot in self.waiting:
            if not slot.done():
                slot.set_exception(httpx.ConnectError("the client is closed"))
        self.waiting.clear()
