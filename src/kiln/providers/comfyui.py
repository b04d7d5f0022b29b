"""ComfyUI: queue an API-format graph, follow it on the WebSocket, fetch exactly that prompt's files.

Protocol: `POST /prompt {prompt, client_id}` → `{prompt_id, number}` (400 `{error, node_errors}` for
an invalid graph); WebSocket `/ws?clientId=` sends `executing {node, prompt_id}` (node null = done),
`progress {value, max}`, `execution_success`, `execution_error`, `execution_interrupted`;
`GET /history/{prompt_id}` → `{prompt_id: {outputs: {node: {images|audio|gifs|video: [{filename,
subfolder, type}]}}, status: {status_str, completed, messages}}}`; `GET /view?filename&subfolder&type`.
When the socket cannot be opened, the client polls `/history/{prompt_id}` instead. Files are only
ever taken from that prompt's history entry (never "the newest file" of an output folder).

One socket per server and event loop serves every run (`_EventStream`): ComfyUI sends a prompt's
events to the client id that queued it, so all prompts are queued under the stream's id and its
reader routes each event by `prompt_id`. Opening and closing a socket per run (HTTP upgrade,
handshake, close handshake) cost more CPU than the rest of the run's ComfyUI calls together.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from kiln.providers.config import ProviderSettings
from kiln.providers.http import (
    OfflineGuard,
    ProviderClient,
    ProviderError,
    ProviderNotConfigured,
    ProviderProtocolError,
    ProviderTimeout,
    shared_client,
)

HISTORY_CHECK = 2.0  # seconds of socket silence before the history is asked
REOPEN_AFTER = 5.0  # seconds between attempts to open the socket after one failed (runs poll meanwhile)
EARLY_PROMPTS = 256  # prompts whose events may wait for their run to start listening
EARLY_EVENTS = 64  # of which the latest are kept per prompt (its end is the one that matters)
OUTPUT_KINDS = ("images", "audio", "gifs", "video", "videos", "files")
ProgressFn = Callable[[float, str], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class OutputFile:
    node_id: str
    kind: str  # images | audio | gifs | video ...
    filename: str
    subfolder: str
    type: str  # output | temp


def output_files(entry: dict[str, Any]) -> list[OutputFile]:
    """The files a history entry lists, in node order; previews (`type: temp`) last."""
    files = []
    for node_id, produced in (entry.get("outputs") or {}).items():
        if not isinstance(produced, dict):
            continue
        for kind in OUTPUT_KINDS:
            for item in produced.get(kind) or []:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    files.append(
                        OutputFile(
                            str(node_id),
                            kind,
                            item["filename"],
                            str(item.get("subfolder") or ""),
                            str(item.get("type") or "output"),
                        )
                    )
    return sorted(files, key=lambda f: f.type != "output")


def _finished(entry: dict[str, Any] | None) -> bool:
    if not entry:
        return False
    status = entry.get("status") or {}
    return bool(
        status.get("completed")
        or status.get("status_str") in ("success", "error")
        or (entry.get("outputs") and not status)
    )


def _execution_error(entry: dict[str, Any]) -> str | None:
    status = entry.get("status") or {}
    if status.get("status_str") != "error":
        return None
    for message in status.get("messages") or []:
        if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
            data = message[1] or {}
            return f"{data.get('node_type', 'node')}: {str(data.get('exception_message', 'failed'))[:300]}"
    return "execution failed"


class ComfyUIClient:
    def __init__(self, http: ProviderClient, *, timeout: float = 600.0, poll_interval: float = 0.5):
        self.http = http
        self.timeout = timeout
        self.poll_interval = poll_interval

    @classmethod
    def from_settings(cls, settings: ProviderSettings, *, offline_guard: OfflineGuard | None = None) -> ComfyUIClient:
        url = settings.comfyui_url
        if not url:
            raise ProviderNotConfigured("comfyui", "KILN_COMFYUI_URL")

        def make() -> ProviderClient:
            return ProviderClient(
                url,
                name="comfyui",
                timeout=60.0,
                connect_timeout=settings.provider_connect_timeout_seconds,
                max_retries=settings.provider_max_retries,
                offline_guard=offline_guard,
            )

        http = shared_client(
            ("comfyui", url, settings.provider_connect_timeout_seconds, settings.provider_max_retries, offline_guard),
            make,
        )
        return cls(http, timeout=settings.comfyui_timeout_seconds)

    def ws_url(self, client_id: str) -> str:
        parts = urlsplit(self.http.base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit(
            (scheme, parts.netloc, parts.path.rstrip("/") + "/ws", urlencode({"clientId": client_id}), "")
        )

    async def submit(self, graph: dict[str, Any], client_id: str) -> str:
        response = await self.http.request(
            "POST", "/prompt", json={"prompt": graph, "client_id": client_id}, expect_ok=False
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not response.is_success:
            raise _prompt_error(response.status_code, data, self.http, response.content)
        if not isinstance(data, dict) or not isinstance(data.get("prompt_id"), str):
            raise ProviderProtocolError("comfyui", "/prompt answer without prompt_id")
        if data.get("node_errors"):
            raise ProviderError("comfyui", f"graph refused: {json.dumps(data['node_errors'])[:300]}", status=400)
        return data["prompt_id"]

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        data = await self.http.json("GET", f"/history/{prompt_id}")
        entry = data.get(prompt_id) if isinstance(data, dict) else None
        return entry if isinstance(entry, dict) else None

    async def view(self, file: OutputFile) -> bytes:
        response = await self.http.request(
            "GET", "/view", params={"filename": file.filename, "subfolder": file.subfolder, "type": file.type}
        )
        return response.content

    async def run(self, graph: dict[str, Any], *, progress: ProgressFn | None = None) -> tuple[str, dict[str, Any]]:
        """Queue `graph`, wait until it finished, return (prompt_id, its history entry).

        Raises ProviderError for a refused graph or a failed execution, ProviderTimeout after
        `self.timeout` seconds.
        """
        await self.http.check_offline()
        deadline = time.monotonic() + self.timeout
        # The socket is open before the prompt is queued (as ComfyUI's own API examples do): the
        # server does not replay events, so every event of this prompt, its end included, reaches
        # us and completion is heard the moment it happens instead of found by polling.
        stream = _stream_of(self)
        events = await stream.ready()
        prompt_id = await self.submit(graph, stream.client_id)
        try:
            if events:
                await self._follow(stream.listen(prompt_id), prompt_id, deadline, progress)
            entry = await self._poll(prompt_id, deadline)
        finally:
            stream.forget(prompt_id)
        assert entry is not None
        error = _execution_error(entry)
        if error:
            raise ProviderError("comfyui", f"prompt {prompt_id} failed: {error}")
        return prompt_id, entry

    async def _follow(
        self, events: asyncio.Queue[dict[str, Any] | None], prompt_id: str, deadline: float, progress: ProgressFn | None
    ) -> None:
        """Read this prompt's socket events until it is done (or the socket goes away); every
        `HISTORY_CHECK` seconds of silence the history is asked too (an event can be lost when
        the socket breaks and is opened again)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderTimeout("comfyui", f"prompt {prompt_id} did not finish in {self.timeout:.0f} s")
            try:
                async with asyncio.timeout(min(remaining, HISTORY_CHECK)):
                    event = await events.get()
            except TimeoutError:
                if _finished(await self.history(prompt_id)):
                    return
                continue
            if event is None:  # the socket closed: the history poll decides
                return
            kind, data = event.get("type"), event.get("data") or {}
            if kind == "progress" and progress is not None and data.get("max"):
                result = progress(float(data.get("value", 0)) / float(data["max"]), f"node {data.get('node')}")
                if asyncio.iscoroutine(result):
                    await result
            if kind in ("execution_success", "execution_error", "execution_interrupted"):
                return
            if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return

    async def _poll(self, prompt_id: str, deadline: float) -> dict[str, Any]:
        delay = 0.02
        while True:
            entry = await self.history(prompt_id)
            if entry is not None and _finished(entry):
                return entry
            if time.monotonic() + delay > deadline:
                raise ProviderTimeout("comfyui", f"prompt {prompt_id} did not finish in {self.timeout:.0f} s")
            await asyncio.sleep(delay)
            delay = min(self.poll_interval, delay * 2)


async def _open_socket(url: str) -> Any:
    from websockets.asyncio.client import connect

    try:
        return await asyncio.wait_for(connect(url, max_size=2**24, open_timeout=5), 5)
    except (OSError, TimeoutError, Exception):  # no socket: runs fall back to polling /history
        return None


class _EventStream:
    """The one socket of a ComfyUI server (per `ProviderClient`, i.e. per event loop), its reader
    routing events to the runs waiting for them by `prompt_id`."""

    def __init__(self, url: str, client_id: str):
        self.url = url
        self.client_id = client_id
        self.socket: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.listeners: dict[str, asyncio.Queue[dict[str, Any] | None]] = {}
        # events that came before their run listened (an instant prompt can end before the
        # answer to its `/prompt` is read); bounded, oldest prompts dropped first
        self.early: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self.lock = asyncio.Lock()
        self.failed_at: float | None = None
        self.closed = False

    async def ready(self) -> bool:
        """Whether the socket is open (opened now if need be); False: the run polls the history."""
        if self.socket is not None:
            return True
        async with self.lock:
            if self.socket is not None:
                return True
            if self.closed or (self.failed_at is not None and time.monotonic() - self.failed_at < REOPEN_AFTER):
                return False
            socket = await _open_socket(self.url)
            if socket is None:
                self.failed_at = time.monotonic()
                return False
            self.socket, self.failed_at = socket, None
            self.reader = asyncio.create_task(self._read(socket))
            return True

    def listen(self, prompt_id: str) -> asyncio.Queue[dict[str, Any] | None]:
        """The prompt's events from now on (and those that came early); None once the socket closed."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        for event in self.early.pop(prompt_id, ()):
            queue.put_nowait(event)
        if self.socket is None:
            queue.put_nowait(None)
        self.listeners[prompt_id] = queue
        return queue

    def forget(self, prompt_id: str) -> None:
        self.listeners.pop(prompt_id, None)
        self.early.pop(prompt_id, None)

    async def _read(self, socket: Any) -> None:
        try:
            async for message in socket:
                if not isinstance(message, str):
                    continue  # binary preview frames
                try:
                    event = json.loads(message)
                except ValueError:
                    continue
                data = event.get("data") if isinstance(event, dict) else None
                prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
                if not isinstance(prompt_id, str):
                    continue  # queue status and the like: no run's business
                queue = self.listeners.get(prompt_id)
                if queue is not None:
                    queue.put_nowait(event)
                    continue
                events = self.early.get(prompt_id)
                if events is None:
                    events = self.early[prompt_id] = deque(maxlen=EARLY_EVENTS)
                events.append(event)
                while len(self.early) > EARLY_PROMPTS:
                    self.early.popitem(last=False)
        except Exception:  # a broken socket: the waiting runs ask the history instead
            pass
        finally:
            if self.socket is socket:
                self.socket = None
            for queue in self.listeners.values():
                queue.put_nowait(None)

    async def close(self) -> None:
        self.closed = True
        socket, self.socket = self.socket, None
        if socket is not None:
            await socket.close()
        if self.reader is not None:
            self.reader.cancel()
            with suppress(asyncio.CancelledError):
                await self.reader


_streams: weakref.WeakKeyDictionary[ProviderClient, _EventStream] = weakref.WeakKeyDictionary()


def _stream_of(comfy: ComfyUIClient) -> _EventStream:
    stream = _streams.get(comfy.http)
    if stream is None:
        client_id = uuid.uuid4().hex
        stream = _streams[comfy.http] = _EventStream(comfy.ws_url(client_id), client_id)
        comfy.http.close_with(stream.close)
    return stream


def _prompt_error(status: int, data: Any, http: ProviderClient, raw: bytes) -> ProviderError:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        text = str(err.get("message") or err.get("type") or "refused")
        details = err.get("details")
        if details:
            text += f": {details}"
        return ProviderError("comfyui", f"graph refused (HTTP {status}): {text[:300]}", status=status)
    from httpx import Response

    return http.error_for(Response(status), raw)
