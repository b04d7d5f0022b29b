"""EventBus: in-process by default, Redis pub/sub in distributed mode; plus WebSocket fan-out.

Subscribers get a bounded queue; a subscriber that falls behind loses its oldest events
rather than slowing publishers down.

Fan-out cost is kept proportional to the subscribers an event is for, so a thousand idle
sockets cost nothing per event that is not theirs:
* the subscribers of a topic are looked up once per topic and cached until one comes or goes;
* ``subscribe(..., where=("user_id", uid))`` indexes a subscriber by one field of the event
  data, so an event reaches only the subscribers of its value;
* ``subscribe(..., transform=fn)`` applies ``fn`` when the event is offered: what it rejects
  (None) never wakes the subscriber's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
CHANNEL_PREFIX = "kiln:events:"
IDLE_CHANNEL = CHANNEL_PREFIX + "_idle"  # keeps the pub/sub connection subscribed when nobody listens


def _pattern(prefix: str) -> str:
    escaped = "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in prefix)
    return f"{CHANNEL_PREFIX}{escaped}*"


Where = tuple[str, Any]
Transform = Callable[[str, dict[str, Any]], Any]


class Subscription:
    """Iterating yields ``(topic, data)``, or what ``transform`` made of it when one is given."""

    def __init__(
        self, prefixes: tuple[str, ...], maxsize: int, *, where: Where | None = None, transform: Transform | None = None
    ):
        self.prefixes = prefixes or ("",)
        self.patterns = tuple(_pattern(p) for p in self.prefixes)
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        self.where = where
        self.transform = transform

    def first_match(self, topic: str) -> str | None:
        for prefix, pattern in zip(self.prefixes, self.patterns, strict=True):
            if topic.startswith(prefix):
                return pattern
        return None

    def offer(self, event: Event) -> None:
        item: Any = event
        if self.transform is not None:
            try:
                item = self.transform(*event)
            except Exception:  # one bad translation must not stop delivery to the others
                log.exception("event bus: transform of %s failed", event[0])
                return
            if item is None:
                return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


class EventBus:
    """Publish `(topic, data)`; subscribe by topic prefix.

    With Redis, each topic is its own channel and a process pattern-subscribes only to the
    prefixes its local subscribers want, so a worker is not woken by every event of the cluster.
    """

    def __init__(self, redis_url: str | None = None, *, queue_size: int = 1000):
        self.redis_url = redis_url
        self.queue_size = queue_size
        self._subs: set[Subscription] = set()
        # topic -> (subscribers without `where`, {field: {value: subscribers}}); rebuilt lazily
        self._routes: dict[str, tuple[list[Subscription], dict[str, dict[Any, list[Subscription]]]]] = {}
        self._redis: Any = None
        self._pubsub: Any = None
        self._patterns: dict[str, int] = {}
        self._listener: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.redis_url and self._redis is None:
            import redis.asyncio as aioredis

            self._redis = aioredis.from_url(self.redis_url)
            self._pubsub = self._redis.pubsub()
            await self._pubsub.subscribe(IDLE_CHANNEL)
            for pattern in self._patterns:
                await self._pubsub.psubscribe(pattern)
            self._listener = asyncio.create_task(self._listen())
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        """Publish queued events in pipelined batches: one round trip for many events, order kept."""
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 500:
                batch.append(self._outbox.get_nowait())
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for topic, message in batch:
                        pipe.publish(CHANNEL_PREFIX + topic, message)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: this process's subscribers still hear it
                log.warning("event bus: redis publish failed; delivering locally", exc_info=True)
                for topic, message in batch:
                    self._deliver(topic, json.loads(message))

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued events have been handed to Redis."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._outbox.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._sender:
            await self.flush()
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
            self._sender = None
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def _listen(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "pmessage":
                continue
            try:
                pattern = message["pattern"].decode()
                topic = message["channel"].decode()[len(CHANNEL_PREFIX) :]
                data = json.loads(message["data"])
            except (ValueError, TypeError, AttributeError):
                continue
            # Redis sends one copy per matching pattern; each subscriber takes its first match only.
            for sub in self._targets(topic, data):
                if sub.first_match(topic) == pattern:
                    sub.offer((topic, data))

    def _route(self, topic: str) -> tuple[list[Subscription], dict[str, dict[Any, list[Subscription]]]]:
        route = self._routes.get(topic)
        if route is None:
            plain: list[Subscription] = []
            keyed: dict[str, dict[Any, list[Subscription]]] = {}
            for sub in self._subs:
                if sub.first_match(topic) is None:
                    continue
                if sub.where is None:
                    plain.append(sub)
                else:
                    keyed.setdefault(sub.where[0], {}).setdefault(sub.where[1], []).append(sub)
            if len(self._routes) > 10_000:  # many distinct topics: keep the cache bounded
                self._routes.clear()
            route = self._routes[topic] = (plain, keyed)
        return route

    def _targets(self, topic: str, data: dict[str, Any]) -> list[Subscription]:
        plain, keyed = self._route(topic)
        if not keyed:
            return plain
        targets = list(plain)
        for field, by_value in keyed.items():
            value = data.get(field)
            try:
                targets.extend(by_value.get(value, ()))
            except TypeError:  # an unhashable value matches no `where`
                continue
        return targets

    def _deliver(self, topic: str, data: dict[str, Any]) -> None:
        for sub in self._targets(topic, data):
            sub.offer((topic, data))

    async def publish(self, topic: str, data: dict[str, Any]) -> None:
        if self._redis is not None:
            # Local subscribers hear it back through Redis, so every process sees exactly one copy.
            self._outbox.put_nowait((topic, json.dumps(data, default=str)))
            return
        self._deliver(topic, data)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @asynccontextmanager
    async def subscribe(
        self, *prefixes: str, where: Where | None = None, transform: Transform | None = None
    ) -> AsyncIterator[Subscription]:
        """Events whose topic starts with one of ``prefixes`` (all when none), and, with
        ``where=(field, value)``, whose ``data[field] == value``."""
        sub = Subscription(tuple(prefixes), self.queue_size, where=where, transform=transform)
        self._subs.add(sub)
        self._routes.clear()
        for pattern in set(sub.patterns):
            self._patterns[pattern] = self._patterns.get(pattern, 0) + 1
            if self._patterns[pattern] == 1 and self._pubsub is not None:
                await self._pubsub.psubscribe(pattern)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            self._routes.clear()
            for pattern in set(sub.patterns):
                self._patterns[pattern] -= 1
                if self._patterns[pattern] == 0:
                    del self._patterns[pattern]
                    if self._pubsub is not None:
                        with contextlib.suppress(Exception):
                            await self._pubsub.punsubscribe(pattern)


Translate = Callable[[str, dict[str, Any]], dict[str, Any] | None | Awaitable[dict[str, Any] | None]]


async def forward_events(
    websocket: WebSocket,
    events: EventBus,
    prefixes: Iterable[str],
    translate: Translate,
    *,
    where: Where | None = None,
) -> None:
    """Send each matching event, translated to the contract's message, until the client goes away.

    Holds no database connection: it only waits on the bus and on the socket. A plain-function
    ``translate`` runs when the event is published, so an event it rejects costs this socket no
    wake-up; ``where=("user_id", uid)`` keeps other users' events from reaching it at all.
    """
    eager = not inspect.iscoroutinefunction(translate)

    async def pump(sub: Subscription) -> None:
        async for item in sub:
            message = item if eager else translate(*item)
            if inspect.isawaitable(message):
                message = await message
            if message is not None:
                await websocket.send_text(json.dumps(message, separators=(",", ":"), default=str))

    async def drain() -> None:
        # Reading is how a disconnect is noticed; client messages are otherwise ignored.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    async with events.subscribe(*prefixes, where=where, transform=translate if eager else None) as sub:
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
