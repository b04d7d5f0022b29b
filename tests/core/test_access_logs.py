"""No secret in logs: token / api_key / password query parameters are redacted in the lines a real
uvicorn server writes for HTTP requests and WebSockets."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from kiln.app import create_app
from kiln.core.network import redact_secrets
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/api/upload/ws/updates?token=abc.def.ghi", "/api/upload/ws/updates?token=[REDACTED]"),
        ("/x?a=1&api_key=k1&b=2", "/x?a=1&api_key=[REDACTED]&b=2"),
        ("/x?password=hunter2&PASSWORD=x", "/x?password=[REDACTED]&PASSWORD=[REDACTED]"),
        ("/x?access_token=t&refresh_token=r", "/x?access_token=[REDACTED]&refresh_token=[REDACTED]"),
        ('127.0.0.1:5 - "GET /x?apikey=zz HTTP/1.1" 200', '127.0.0.1:5 - "GET /x?apikey=[REDACTED] HTTP/1.1" 200'),
        ("/x?tokens_seen=3&page=2", "/x?tokens_seen=3&page=2"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_redact_secrets(line: str, expected: str):
    assert redact_secrets(line) == expected


async def test_a_real_server_logs_no_query_secrets(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    caplog.set_level(logging.INFO)
    # An earlier test that ran uvicorn with its default logging config leaves `uvicorn.access`
    # not propagating (and may disable it); caplog listens at the root, so undo that here.
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        caplog.set_level(logging.INFO, logger=name)  # a server started with log_level="warning" set it higher
    app = create_app(make_settings(tmp_path / "home", db_url, apps=["media"]), migrate=False)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=True, lifespan="on", ws="websockets-sansio"
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "server did not start"
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz", params={"token": "SECRET-ONE", "page": "2"})).status_code == 200
            await http.get("/api/auth/me", params={"api_key": "SECRET-TWO"})
            await http.get("/nowhere", params={"password": "SECRET-THREE"})
        with pytest.raises(ConnectionClosed):  # closed by the surface: the token is not valid
            async with connect(f"ws://127.0.0.1:{port}/api/upload/ws/updates?token=SECRET-FOUR") as ws:
                await ws.recv()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("uvicorn")]
    text = "\n".join(lines)
    assert "SECRET" not in text, text
    assert text.count("[REDACTED]") >= 4, text
    assert "page=2" in text  # other parameters are kept
