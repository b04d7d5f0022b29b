"""EventBus: in-process by default, Redis pub/sub in distributed mode; plus WebSocket fan-out.

Subscribers get a bounded queue; a subscriber that falls behind loses its oldest events
rather than slowing publishers down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
CHANNEL = "kiln:events"


class Subscription:
    def __init__(self, prefixes: tuple[str, ...], maxsize: int):
        self.prefixes = prefixes
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def matches(self, topic: str) -> bool:
        return not self.prefixes or topic.startswith(self.prefixes)

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.queue.get()


class EventBus:
    """Publish `(topic, data)`; subscribe by topic prefix."""

    def __init__(self, redis_url: str | None = None, *, queue_size: int = 1000):
        self.redis_url = redis_url
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.redis_url and self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url)
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(CHANNEL)
            self._listener = asyncio.create_task(self._listen(pubsub))

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _listen(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    topic, data = json.loads(message["data"])
                except (ValueError, TypeError):
                    continue
                self._deliver(topic, data)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _deliver(self, topic: str, data: dict[str, Any]) -> None:
        for sub in list(self._subs):
            if sub.matches(topic):
                sub.offer((topic, data))

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        if self._redis is not None:
            # Local subscribers hear it back through the channel, so every process sees one copy.
            try:
                await self._redis.publish(CHANNEL, json.dumps([topic, data], default=str))
                return
            except Exception:  # Redis away: still serve this process's subscribers
                log.warning("event bus: redis publish failed; delivering locally", exc_info=True)
        self._deliver(topic, data)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @asynccontextmanager
    async def subscribe(self, *prefixes: str) -> AsyncIterator[Subscription]:
        sub = Subscription(tuple(prefixes), self.queue_size)
        self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)


Translate = Callable[[str, dict[str, Any]], dict[str, Any] | None | Awaitable[dict[str, Any] | None]]


async def forward_events(
    websocket: WebSocket, events: EventBus, prefixes: Iterable[str], translate: Translate
) -> None:
    """Send each matching event, translated to the contract's message, until the client goes away.

    Holds no database connection: it only waits on the bus and on the socket.
    """

    async def pump(sub: Subscription) -> None:
        async for topic, data in sub:
            message = translate(topic, data)
            if asyncio.iscoroutine(message):
                message = await message
            if message is not None:
                await websocket.send_json(message)

    async def drain() -> None:
        # Reading is how a disconnect is noticed; client messages are otherwise ignored.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    async with events.subscribe(*prefixes) as sub:
        sender = asyncio.create_task(pump(sub))
        receiver = asyncio.create_task(drain())
        try:
            await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            for task in (sender, receiver):
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                    await task
            if websocket.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(Exception):
                    await websocket.close()
