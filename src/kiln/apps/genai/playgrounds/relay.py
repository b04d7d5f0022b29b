"""A streamed turn as Server-Sent Events: `delta {text}` per token, then `complete` (the turn's
answer payload) or `error {error, status_code, message}`.

The relay runs in its own task, started with the response (not on the first read of its body), so
the upstream request goes out while the handler returns and the response headers are written. It
writes the events itself, through the response's ASGI `send`: the response's task only sends the
headers and then waits for the relay or the client's disconnect. Per upstream read that is one
wake-up and one write, where a queue between the relay and a body iterator (Starlette's
`StreamingResponse`, which also runs a task group per response to watch for the disconnect) cost a
second task's wake-up, its queue and its coroutine stack per token. The deltas that arrived in one
read go out in one write; nothing waits for more.

When the client goes away (its disconnect arrives, or a write fails) or the response's task ends
for any other reason while the model is still answering, the relay is cancelled: it stops the
upstream call and persists what was produced, marked incomplete. Once the answer has ended the
relay is no longer cancelled, so a client leaving during the persistence cannot undo it; events
written after the response has ended are dropped. Persistence uses its own database session (the
request's is gone by then).
"""

from __future__ import annotations

import asyncio
import json
import logging
from json.encoder import encode_basestring_ascii
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from kiln.apps.genai.playgrounds.chat import Turn, finish
from kiln.core.body_send import RAW_BODY_SEND
from kiln.providers.http import ProviderError

log = logging.getLogger(__name__)
_relays: set[asyncio.Task[Any]] = set()


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()


def sse_delta(text: str) -> bytes:
    """`sse("delta", {"text": text})`, byte for byte, without building a dict per token (the JSON
    string is what `json.dumps` writes for a str: its ASCII-escaping encoder, called directly)."""
    return b'event: delta\ndata: {"text":' + encode_basestring_ascii(text).encode() + b"}\n\n"


class _ClientGone(Exception):
    """A write to the client failed: the connection is gone."""


class EventStream(Response):
    """The SSE response of one turn; its relay task starts when the response is made."""

    media_type = "text/event-stream"

    def __init__(self, turn: Turn):
        self.turn = turn
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._send: Send | None = None  # set once the headers are out; until then events wait in _early
        self._early: list[bytes] = []
        self._ended = False  # the relay has written its last event
        self._streaming = True  # the upstream answer is still being read (the relay may be cancelled)
        self.relay = asyncio.create_task(self._relay())
        _relays.add(self.relay)
        self.relay.add_done_callback(_relays.discard)

    # ------------------------------------------------------------------------------ the relay
    async def _write(self, data: bytes) -> None:
        if self._send is None:
            self._early.append(data)
            return
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except OSError:
            raise _ClientGone from None

    async def _end(self, last: bytes) -> None:
        try:
            await self._write(last)
            self._ended = True
            if self._send is not None:
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except (_ClientGone, OSError):
            pass  # the client left after the answer was persisted

    async def _relay(self) -> None:
        """Forward the model's deltas as they arrive; persist whatever was produced."""
        turn = self.turn
        parts: list[str] = []
        finish_reason = None
        try:
            async for deltas in turn.llm.chat_stream_reads(turn.messages, model=turn.runtime_model):
                events = []
                for delta in deltas:
                    if delta.content:
                        parts.append(delta.content)
                        events.append(sse_delta(delta.content))
                    finish_reason = delta.finish_reason or finish_reason
                if events:
                    await self._write(events[0] if len(events) == 1 else b"".join(events))
        except (asyncio.CancelledError, _ClientGone):  # the client went away: keep what was produced
            self._streaming = False
            await finish(turn, "".join(parts), incomplete=True, error="client_disconnected")
            return
        except ProviderError as exc:
            self._streaming = False
            await finish(turn, "".join(parts), incomplete=True, error="llm_unreachable")
            message = f"LLM provider {turn.provider_slug} failed: {exc.message}"
            await self._end(sse("error", {"error": "llm_unreachable", "status_code": 502, "message": message}))
            return
        except Exception:
            self._streaming = False
            log.exception("playground relay failed")
            internal = {"error": "internal_error", "status_code": 500, "message": "Internal server error"}
            await self._end(sse("error", internal))
            return
        self._streaming = False
        await self._end(sse("complete", await finish(turn, "".join(parts), finish_reason=finish_reason)))

    # ------------------------------------------------------------------------------ the response
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listener: asyncio.Future[None] | None = None
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            while self._early:  # what the relay produced before the headers were out
                early, self._early = self._early, []
                await send({"type": "http.response.body", "body": b"".join(early), "more_body": True})
            if self._ended:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            # From here on the relay writes itself: past the middleware when the application
            # vouches that none of it acts on a body message (kiln.core.body_send).
            self._send = scope.get(RAW_BODY_SEND, send)
            listener = asyncio.ensure_future(_disconnected(receive))
            await asyncio.wait((self.relay, listener), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._send = None  # no ASGI message after the response has returned
            if listener is not None:
                listener.cancel()
            if self._streaming and not self.relay.done():  # the client left, or this response failed
                self.relay.cancel()


async def _disconnected(receive: Receive) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()


async def stream(turn: Turn) -> EventStream:
    """The turn's response, once its relay has taken its first step: with an idle pooled connection
    that step writes the upstream request (nothing in it waits), so whatever the caller does next
    (release its database session, return, write the headers through the middleware) runs while the
    model works. A read-only SQLite rollback never suspends, so without this yield the relay started
    only after all of that."""
    response = EventStream(turn)
    try:
        await asyncio.sleep(0)
    except BaseException:
        response.relay.cancel()
        raise
    return response


async def settle() -> None:
    """Wait for relays still persisting (tests, shutdown)."""
    while _relays:
        await asyncio.gather(*list(_relays), return_exceptions=True)
