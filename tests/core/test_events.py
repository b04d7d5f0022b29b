"""EventBus in-process and over Redis, and the WebSocket forwarding helper."""

from __future__ import annotations

import asyncio
import os

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from kiln.core.events import EventBus, forward_events

REDIS_URL = os.environ.get("KILN_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


async def test_in_process_prefix_filtering():
    bus = EventBus()
    async with bus.subscribe("media.") as media, bus.subscribe() as everything:
        await bus.publish("media.status", {"id": 1})
        await bus.publish("job.updated", {"id": 2})
        assert await asyncio.wait_for(media.__anext__(), 1) == ("media.status", {"id": 1})
        assert media.queue.empty()
        assert [everything.queue.get_nowait()[0] for _ in range(2)] == ["media.status", "job.updated"]
    assert bus.subscriber_count == 0


async def test_slow_subscriber_loses_oldest_not_newest():
    bus = EventBus(queue_size=3)
    async with bus.subscribe("n") as sub:
        for i in range(10):
            await bus.publish("n", {"i": i})
        assert [sub.queue.get_nowait()[1]["i"] for _ in range(3)] == [7, 8, 9]
        assert sub.dropped == 7


@pytest.mark.parametrize("copies", [2])
async def test_redis_bus_reaches_other_processes_once(copies: int):
    buses = [EventBus(REDIS_URL) for _ in range(copies)]
    for bus in buses:
        await bus.start()
    try:
        async with buses[0].subscribe("x.") as here, buses[1].subscribe("x.") as there:
            await asyncio.sleep(0.2)  # let both pub/sub connections subscribe
            await buses[0].publish("x.hello", {"n": 1})
            assert await asyncio.wait_for(there.__anext__(), 3) == ("x.hello", {"n": 1})
            assert await asyncio.wait_for(here.__anext__(), 3) == ("x.hello", {"n": 1})
            await asyncio.sleep(0.1)
            assert here.queue.empty() and there.queue.empty()
    finally:
        for bus in buses:
            await bus.stop()


def test_forward_events_translates_filters_and_stops_on_disconnect():
    bus = EventBus()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()

        def translate(topic: str, data: dict) -> dict | None:
            if data.get("user") != "alice":
                return None
            return {"type": "STATUS", "id": data["id"]}

        await forward_events(websocket, bus, ["media."], translate)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    with TestClient(app) as http, http.websocket_connect("/ws") as ws:
        http.portal.call(asyncio.sleep, 0.1)
        http.portal.call(bus.publish, "media.x", {"user": "bob", "id": 1})
        http.portal.call(bus.publish, "job.updated", {"user": "alice", "id": 2})
        http.portal.call(bus.publish, "media.x", {"user": "alice", "id": 3})
        assert ws.receive_json() == {"type": "STATUS", "id": 3}
        assert bus.subscriber_count == 1
    deadline = 50
    while bus.subscriber_count and deadline:
        deadline -= 1
        import time

        time.sleep(0.02)
    assert bus.subscriber_count == 0
