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


async def test_where_delivers_only_the_matching_value_and_transform_runs_at_offer():
    bus = EventBus()
    seen: list[int] = []

    def keep_even(topic: str, data: dict) -> dict | None:
        seen.append(data["n"])
        return {"n": data["n"]} if data["n"] % 2 == 0 else None

    async with (
        bus.subscribe("media.", where=("user_id", "alice")) as alice,
        bus.subscribe("media.", where=("user_id", "bob"), transform=keep_even) as bob,
        bus.subscribe("media.") as everyone,
    ):
        for n, user in enumerate(["alice", "bob", "bob", "carol", ["unhashable"]]):
            await bus.publish("media.status", {"user_id": user, "n": n})
        assert [alice.queue.get_nowait()[1]["n"] for _ in range(alice.queue.qsize())] == [0]
        # bob's transform saw both of bob's events (and no one else's); only the even one was queued
        assert seen == [1, 2]
        assert [bob.queue.get_nowait() for _ in range(bob.queue.qsize())] == [{"n": 2}]
        assert everyone.queue.qsize() == 5
    # the route cache forgets subscribers that left
    async with bus.subscribe("media.", where=("user_id", "alice")) as again:
        await bus.publish("media.status", {"user_id": "alice", "n": 9})
        assert again.queue.get_nowait()[1]["n"] == 9
    assert bus.subscriber_count == 0


async def test_a_failing_transform_does_not_stop_other_subscribers():
    bus = EventBus()

    def broken(topic: str, data: dict) -> dict:
        raise KeyError("nope")

    async with bus.subscribe("x", transform=broken) as bad, bus.subscribe("x") as good:
        await bus.publish("x", {"n": 1})
        assert bad.queue.empty()
        assert good.queue.get_nowait() == ("x", {"n": 1})
