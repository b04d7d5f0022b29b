"""1,000 concurrent authenticated status sockets on a real uvicorn server on loopback.

Each socket authenticates (cookie for some, ``?token=`` for the others), every user's update
reaches every one of that user's sockets, and no socket ever sees another user's media.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import time
import uuid

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect

from kiln.apps.media.processing.status import StatusEvent, publish_all
from kiln.core.db import utcnow
from tests.apps.media.mediakit import PASSWORD, settings  # noqa: F401  (media-only settings fixture)

SOCKETS = 1000
USERS = 4


def _raise_open_files(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= want, "cannot open enough files for this test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _login(http: httpx.AsyncClient, email: str) -> tuple[str, str]:
    r = await http.post("/api/auth/signup", json={"email": email, "password": PASSWORD, "full_name": "W"})
    assert r.status_code == 201, r.text
    r = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    token = r.cookies["access_token"]
    http.cookies.clear()
    return r.json()["user"]["id"], token


@pytest.mark.timeout(120)
async def test_thousand_sockets_each_get_only_their_users_updates(app):
    _raise_open_files(4 * SOCKETS + 256)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws_ping_interval=None, backlog=2048
        )
    )
    serving = asyncio.create_task(server.serve())
    conns = []
    baseline = app.state.kernel.events.subscriber_count  # the engine's own (cancel listener)
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.05)
        base = f"127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://{base}", timeout=60) as http:
            users = [await _login(http, f"ws{i}@scale.test") for i in range(USERS)]

        started = time.monotonic()
        gate = asyncio.Semaphore(200)

        async def open_socket(k: int):
            user_id, token = users[k % USERS]
            url = f"ws://{base}/api/upload/ws/updates"
            async with gate:
                if k % 2:  # half by cookie, half by ?token=
                    return await connect(
                        url, additional_headers={"Cookie": f"access_token={token}"}, open_timeout=60, ping_interval=None
                    )
                return await connect(f"{url}?token={token}", open_timeout=60, ping_interval=None)

        conns = await asyncio.gather(*(open_socket(k) for k in range(SOCKETS)))
        kernel = app.state.kernel
        deadline = time.monotonic() + 30
        while kernel.events.subscriber_count < baseline + SOCKETS:  # every socket authenticated and subscribed
            assert time.monotonic() < deadline, f"only {kernel.events.subscriber_count} subscribed"
            await asyncio.sleep(0.05)
        connected_in = time.monotonic() - started

        # Two updates per user, then one closing "READY" per user: a socket reads until its own
        # user's READY, so anything misrouted before it would be seen.
        sent: dict[str, list[str]] = {uid: [] for uid, _ in users}
        for status in ("EXTRACTING", "PROCESSING", "READY"):
            for uid, _ in users:
                media_id = str(uuid.uuid4())
                sent[uid].append(media_id)
                await publish_all(kernel.events, [StatusEvent(uid, media_id, status, "Helios", utcnow())])

        async def read_until_ready(k: int, ws) -> list[dict]:
            got = []
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                got.append(msg)
                if msg["status"] == "READY":
                    return got

        received = await asyncio.gather(*(read_until_ready(k, ws) for k, ws in enumerate(conns)))
        for k, messages in enumerate(received):
            uid = users[k % USERS][0]
            assert [m["media_id"] for m in messages] == sent[uid], f"socket {k} got another user's update"
            assert [m["status"] for m in messages] == ["EXTRACTING", "PROCESSING", "READY"]
            assert all(m["type"] == "MEDIA_STATUS_UPDATE" for m in messages)
        # nothing more is queued for anyone
        extra = await asyncio.gather(*(asyncio.wait_for(ws.recv(), 0.2) for ws in conns[:50]), return_exceptions=True)
        assert all(isinstance(e, TimeoutError) for e in extra)
        assert connected_in < 60
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
    # sockets that went away leave no subscription behind
    deadline = time.monotonic() + 10
    while app.state.kernel.events.subscriber_count > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert app.state.kernel.events.subscriber_count == baseline
