"""Client of an SDNext / AUTOMATIC1111 server (`/sdapi/v1/...`).

* `txt2img(payload)` posts the generation and returns decoded images plus `info`, which both
  servers send as a JSON-encoded **string**: it is parsed into a dict (the raw text is kept).
  A `force_task_id` in the payload names the task, so `/progress` can be told apart from
  other clients' work.
* `progress()` reads `/sdapi/v1/progress` (`id`, `progress` 0..1, `eta_relative`, `state`,
  `current_image`, `textinfo`); `interrupt()` posts `/sdapi/v1/interrupt`, after which the
  running txt2img call returns early with what it has.
* `options()`, `version()`, `loras()`, `refresh_loras()` for status and the library.

Every call goes through the shared `ProviderClient` (`providers/http.py`): its timeouts, its
retries with backoff on 429/5xx and connect errors for the reads and `/interrupt` (never for
txt2img, which must not run twice: an "out of memory" 500 would just repeat), and its offline
guard (an SDNext server that is not on loopback/LAN counts as cloud). Errors: `SDNextUnavailable`
(connection refused, timeout, 5xx after the retries) and `SDNextError` carrying the server's own
message ("CUDA out of memory ..."), never a traceback. HTTP Basic auth when a user is given
(`--auth`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from kiln.providers.http import (
    OfflineBlocked,
    OfflineGuard,
    ProviderClient,
    ProviderError,
    ProviderTimeout,
)

MAX_MESSAGE = 500


class SDNextError(Exception):
    """The server answered with an error."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class SDNextUnavailable(SDNextError):
    """The server could not be reached (or did not answer in time)."""


@dataclass
class Txt2ImgResult:
    images: list[bytes]
    info: dict[str, Any]
    info_raw: str | None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class Progress:
    task_id: str | None
    progress: float
    eta_relative: float | None
    state: dict[str, Any]
    current_image: str | None
    textinfo: str | None

    @property
    def step(self) -> int | None:
        value = self.state.get("sampling_step")
        return value if isinstance(value, int) else None

    @property
    def steps(self) -> int | None:
        value = self.state.get("sampling_steps")
        return value if isinstance(value, int) and value > 0 else None

    @property
    def busy(self) -> bool:
        job_count = self.state.get("job_count")
        return bool(job_count) if isinstance(job_count, int) else self.progress > 0


def parse_info(raw: Any) -> tuple[dict[str, Any], str | None]:
    """`info` as SDNext/A1111 send it (a JSON string), or a dict from older forks."""
    if isinstance(raw, dict):
        return raw, None
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {"text": raw[:10_000]}, raw
        return (parsed if isinstance(parsed, dict) else {"value": parsed}), raw
    return {}, None


def decode_image(data: str) -> bytes:
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raise SDNextError("SDNext returned an image that is not base64") from None


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        for key in ("errors", "detail", "error", "message"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                message = value.strip()
                break
            if isinstance(value, list | dict) and value:
                message = json.dumps(value)[:MAX_MESSAGE]
                break
    if not message:
        message = f"SDNext answered HTTP {response.status_code}"
    return message[:MAX_MESSAGE]


class SDNextClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        offline_guard: OfflineGuard | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        headers = {}
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self.base_url = base_url.rstrip("/")
        self.http = ProviderClient(
            self.base_url,
            name="sdnext",
            timeout=timeout,
            connect_timeout=10.0,
            max_retries=max_retries,
            headers=headers,
            offline_guard=offline_guard,
            transport=transport,
        )

    async def __aenter__(self) -> SDNextClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> httpx.Response:
        try:
            extra = {"timeout": timeout} if timeout is not None else {}
            response = await self.http.request(method, path, expect_ok=False, **kw, **extra)
        except OfflineBlocked:
            raise SDNextUnavailable("SDNext is not called while the runtime profile is offline") from None
        except ProviderTimeout:
            raise SDNextUnavailable("SDNext did not answer in time") from None
        except ProviderError as exc:
            detail = exc.message.removeprefix("unreachable (").rstrip(")")
            raise SDNextUnavailable(f"SDNext is not reachable ({detail})") from None
        if response.status_code == 401:
            raise SDNextError("SDNext refused the credentials (HTTP 401)", 401)
        if response.status_code >= 400:
            raise SDNextError(_error_message(response), response.status_code)
        return response

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = await self._request(method, path, **kw)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise SDNextError(f"SDNext sent a non-JSON answer to {path}") from None

    async def txt2img(self, payload: dict[str, Any]) -> Txt2ImgResult:
        body = await self._json("POST", "/sdapi/v1/txt2img", json=payload, retries=0)
        if not isinstance(body, dict):
            raise SDNextError("SDNext sent an unexpected txt2img answer")
        images = [decode_image(i) for i in body.get("images") or [] if isinstance(i, str) and i]
        info, raw = parse_info(body.get("info"))
        params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        return Txt2ImgResult(images=images, info=info, info_raw=raw, parameters=params)

    async def progress(self, *, skip_current_image: bool = True, timeout: float = 10.0) -> Progress:
        body = await self._json(
            "GET", "/sdapi/v1/progress", timeout=timeout, params={"skip_current_image": str(skip_current_image).lower()}
        )
        body = body if isinstance(body, dict) else {}
        value = body.get("progress")
        eta = body.get("eta_relative")
        state = body.get("state") if isinstance(body.get("state"), dict) else {}
        task = body.get("id") if body.get("id") is not None else state.get("id")
        return Progress(
            task_id=str(task) if task not in (None, "") else None,
            progress=float(value) if isinstance(value, int | float) and 0 <= value <= 1 else 0.0,
            eta_relative=float(eta) if isinstance(eta, int | float) and eta >= 0 else None,
            state=state,
            current_image=body.get("current_image") if isinstance(body.get("current_image"), str) else None,
            textinfo=body.get("textinfo") if isinstance(body.get("textinfo"), str) else None,
        )

    async def interrupt(self) -> None:
        await self._request("POST", "/sdapi/v1/interrupt", timeout=10.0)

    async def options(self) -> dict[str, Any]:
        body = await self._json("GET", "/sdapi/v1/options", timeout=10.0)
        return body if isinstance(body, dict) else {}

    async def version(self) -> dict[str, Any]:
        body = await self._json("GET", "/sdapi/v1/version", timeout=10.0)
        return body if isinstance(body, dict) else {}

    async def loras(self) -> list[dict[str, Any]]:
        body = await self._json("GET", "/sdapi/v1/loras", timeout=30.0)
        return [item for item in body or [] if isinstance(item, dict)] if isinstance(body, list) else []

    async def refresh_loras(self) -> None:
        await self._request("POST", "/sdapi/v1/refresh-loras", timeout=60.0)
