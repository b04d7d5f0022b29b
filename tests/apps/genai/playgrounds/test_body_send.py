"""A streamed turn's body messages go past the middleware only when none of it acts on a body
(kiln.core.body_send); a body-rewriting middleware, in the root application or in the surface's,
still sees every event."""

from __future__ import annotations

import sys

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.middleware import Middleware

from kiln.app import create_app
from kiln.apps.genai.playgrounds.relay import settle
from tests.apps.genai.playgrounds.helpers import P, chat_ready, new_session, parse_events

METRICS_WRAPPER = "MetricsMiddleware.__call__.<locals>.send_wrapper"


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


def _callers() -> set[str]:
    names, frame = set(), sys._getframe(1)
    while frame is not None:
        names.add(frame.f_code.co_qualname)
        frame = frame.f_back
    return names


class _Recorder:
    """The server's side: every message the application sends, with the functions it came through."""

    def __init__(self, app):
        self.app = app
        self.sent: list[tuple[str, bytes, set[str]]] = []

    async def __call__(self, scope, receive, send):
        async def recording(message):
            self.sent.append((message["type"], message.get("body", b""), _callers()))
            await send(message)

        await self.app(scope, receive, recording)


class _Shout:
    """A body-rewriting middleware: `event: delta` becomes `event: shout`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def shouting(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": message.get("body", b"").replace(b"event: delta", b"event: shout")}
            await send(message)

        await self.app(scope, receive, shouting)


async def _streamed(application, llm) -> tuple[list[tuple[str, dict]], _Recorder]:
    recorder = _Recorder(application)
    async with (
        LifespanManager(application, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=recorder), base_url="http://testserver") as client,
    ):
        h = await chat_ready(application, client)
        sid = (await new_session(client, h["ann"]))["id"]
        llm.script("one two three")
        r = await client.post(f"{P}/sessions/{sid}/messages/stream", headers=h["ann"], json={"prompt": "go"})
        assert r.status_code == 200, r.text
        await settle()
    return parse_events(r.text), recorder


async def test_streamed_events_go_past_middleware_that_acts_on_no_body(llm, settings):
    events, recorder = await _streamed(create_app(settings, migrate=False), llm)
    assert [e for e, _ in events] == ["delta", "delta", "delta", "complete"]
    starts = [callers for kind, _, callers in recorder.sent if kind == "http.response.start"]
    deltas = [callers for kind, body, callers in recorder.sent if b"event: delta" in body]
    assert deltas and all(METRICS_WRAPPER in callers for callers in starts)  # the headers: the whole stack
    assert not [callers for callers in deltas if METRICS_WRAPPER in callers]


@pytest.mark.parametrize("where", ["root", "surface"])
async def test_a_body_rewriting_middleware_still_rewrites_every_event(llm, settings, where):
    application = create_app(settings, migrate=False)
    if where == "root":  # inside the root's RawBodySend, where the short way would pass it by
        application.user_middleware.append(Middleware(_Shout))
    else:
        next(s for s in application.state.mounted if s.name == "genai").app.add_middleware(_Shout)
    events, _ = await _streamed(application, llm)
    assert [e for e, _ in events] == ["shout", "shout", "shout", "complete"]
    assert "".join(data["text"] for _, data in events[:-1]) == "one two three"
