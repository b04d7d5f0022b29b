"""The one HTTP client every provider adapter uses: timeouts, bounded retries, typed errors, offline guard.

`ProviderClient(base_url, name=..., origin="local"|"cloud")` wraps an `httpx.AsyncClient`.
Before every request it asks the offline guard (the client's own, else the process-wide one set
with `set_offline_guard`) and refuses a cloud-origin request while the guard says offline
(`OfflineBlocked`). Responses 429 and 5xx and connect errors are retried with exponential backoff
(bounded attempts and sleep; `Retry-After` honoured up to the cap); a read timeout is not retried
(the server may already be working on it) and becomes `ProviderTimeout`. Errors carry a safe
message: a short excerpt of the upstream's error text, with the API key blanked; headers are never
logged.

Plain-`http://` servers (the local LLM, ComfyUI, vector stores) are called through
`providers/http1.py`'s lean HTTP/1.1 pool, which raises the same httpx exceptions and hands out
`httpx.Response` objects, so the policy here is one for both; HTTPS, absolute URLs, an injected
`transport` and unusual arguments (`files`, `data`, per-call `timeout`, ...) go through httpx.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import logging
import random
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from kiln.providers import http1

log = logging.getLogger(__name__)

Origin = Literal["local", "cloud"]
OfflineGuard = Callable[[], bool | Awaitable[bool]]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_MESSAGE = 300

_process_guard: OfflineGuard | None = None


class ProviderError(Exception):
    """An outside service failed. `status` is its HTTP status (None when no response came)."""

    def __init__(self, provider: str, message: str, *, status: int | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.message = message
        self.status = status


class ProviderNotConfigured(ProviderError):
    """The setting that names the server is unset."""

    def __init__(self, provider: str, setting: str):
        super().__init__(provider, f"not configured: set {setting}")
        self.setting = setting


class ProviderUnavailable(ProviderError):
    """The server could not be reached, or kept answering 429/5xx after the retries."""


class ProviderTimeout(ProviderError):
    """The server did not answer in time."""


class OfflineBlocked(ProviderError):
    """A cloud-origin request while the runtime profile is offline."""


class ProviderProtocolError(ProviderError):
    """The server answered, but not in the protocol's shape."""


def set_offline_guard(guard: OfflineGuard | None) -> None:
    """Install the process-wide guard (`True` = offline) consulted by clients without their own."""
    global _process_guard
    _process_guard = guard


def origin_of(url: str) -> Origin:
    """`local` for loopback, private, link-local and `.local`/single-label hosts; else `cloud`."""
    host = (urlsplit(url).hostname or "").lower()
    if not host or host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return "local"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "local" if "." not in host else "cloud"
    return "local" if address.is_loopback or address.is_private or address.is_link_local else "cloud"


def _safe_excerpt(body: bytes, secrets: tuple[str, ...]) -> str:
    text = body[:4096].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err.get("type") or err
        if err is not None:
            text = err if isinstance(err, str) else json.dumps(err)
    text = re.sub(r"\s+", " ", text).strip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:MAX_MESSAGE] or "(empty body)"


class ProviderClient:
    """An `httpx.AsyncClient` for one outside server, with Kiln's retry/timeout/guard policy."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        origin: Origin | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_retries: int = 2,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        headers: dict[str, str] | None = None,
        offline_guard: OfflineGuard | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 64,
    ):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.origin: Origin = origin or origin_of(base_url)
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._guard = offline_guard
        self._secrets = (api_key,) if api_key else ()
        all_headers = dict(headers or {})
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            trust_env=False,
        )
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._wire: http1.Pool | None = None
        if transport is None and http1.usable_for(self.base_url, all_headers):
            self._wire = http1.Pool(
                self.base_url,
                timeout=timeout,
                connect_timeout=connect_timeout,
                max_connections=max_connections,
                headers=all_headers,
            )

    def close_with(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Have `closer` run when this client is closed (for a connection kept beside its pool)."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        closers, self._closers = self._closers, []
        for closer in closers:
            await closer()
        if self._wire is not None:
            self._wire.close()
        await self._http.aclose()

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------------------------- policy
    async def check_offline(self) -> None:
        if self.origin != "cloud":
            return
        guard = self._guard or _process_guard
        if guard is None:
            return
        offline = guard()
        if inspect.isawaitable(offline):
            offline = await offline
        if offline:
            raise OfflineBlocked(self.name, "the runtime profile is offline; cloud providers are not called")

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        delay = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random() / 2)
        if response is not None:
            after = response.headers.get("retry-after", "")
            if after.strip().isdigit():
                delay = max(delay, min(self.max_backoff, float(after)))
        return delay

    def error_for(self, response: httpx.Response, body: bytes) -> ProviderError:
        excerpt = _safe_excerpt(body, self._secrets)
        cls = ProviderUnavailable if response.status_code in RETRY_STATUSES else ProviderError
        return cls(self.name, f"HTTP {response.status_code}: {excerpt}", status=response.status_code)

    def _transport_error(self, exc: httpx.HTTPError) -> ProviderError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(self.name, f"no answer in time ({type(exc).__name__})")
        return ProviderUnavailable(self.name, f"unreachable ({type(exc).__name__})")

    # ---------------------------------------------------------------------------------- calls
    async def request(self, method: str, path: str, *, expect_ok: bool = True, **kwargs: Any) -> httpx.Response:
        """Send with retries; a non-2xx answer raises a `ProviderError` unless `expect_ok=False`."""
        async with self.stream(method, path, expect_ok=expect_ok, **kwargs) as response:
            await response.aread()
            return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProviderProtocolError(self.name, f"{method} {path}: the answer is not JSON") from None

    @asynccontextmanager
    async def stream(
        self, method: str, path: str, *, expect_ok: bool = True, retries: int | None = None, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response; retries happen only before the first byte of a good answer.
        `retries` overrides the client's `max_retries` for this call (0 for work that must not repeat)."""
        await self.check_offline()
        max_retries = self.max_retries if retries is None else max(0, retries)
        attempt = 0
        wire = self._wire.prepare(method, path, kwargs) if self._wire is not None else None
        while True:
            try:
                if wire is not None:
                    response = await self._wire.send(method, *wire)  # type: ignore[union-attr]
                else:
                    response = await self._http.send(self._http.build_request(method, path, **kwargs), stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.PoolTimeout) as exc:
                if attempt < max_retries:
                    await asyncio.sleep(self._delay(attempt, None))
                    attempt += 1
                    continue
                raise self._transport_error(exc) from None
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            try:
                if response.status_code in RETRY_STATUSES and attempt < max_retries:
                    await response.aread()
                    log.info("%s %s %s -> %s, retrying", self.name, method, path, response.status_code)
                    await asyncio.sleep(self._delay(attempt, response))
                    attempt += 1
                    continue
                if expect_ok and not response.is_success:
                    raise self.error_for(response, await response.aread())
                yield response
                return
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            finally:
                await response.aclose()


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], ProviderClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(key: tuple[Any, ...], factory: Callable[[], ProviderClient]) -> ProviderClient:
    """One client per `key` and event loop (connection pools are bound to their loop), made on first use.

    The key must hold everything the factory reads (URL, key, timeouts), so a settings change
    gives a new client.
    """
    loop = asyncio.get_running_loop()
    clients = _shared.setdefault(loop, {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = factory()
    return client


async def close_shared_clients() -> None:
    """Close the clients of the running loop (on shutdown)."""
    clients = _shared.pop(asyncio.get_running_loop(), {})
    for client in clients.values():
        await client.aclose()
