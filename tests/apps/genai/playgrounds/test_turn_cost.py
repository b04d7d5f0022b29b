"""What a turn costs beyond the model: the relay's per-token encoding, the statements that
persist a turn, and when the model call starts."""

from __future__ import annotations

import asyncio
import time

import pytest

from kiln.apps.genai.playgrounds.chat import Turn
from kiln.apps.genai.playgrounds.relay import settle, sse, sse_delta, stream
from kiln.apps.genai.playgrounds.router import _stream_after_rollback
from kiln.providers.http import ProviderClient
from kiln.providers.llm import ChatDelta, LLMClient, collect
from tests.apps.genai.playgrounds.helpers import P, chat_ready, new_session, parse_events, recorded_sql


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


def test_delta_events_are_encoded_as_the_generic_event_writer_does() -> None:
    for text in ["t1 ", "", 'quote " back\\slash\nnewline', "é \u2028 😀 \x00"]:
        assert sse_delta(text) == sse("delta", {"text": text})


async def test_a_turn_is_persisted_with_one_update_of_its_session(llm, app, client):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    for turn, prompt in enumerate(("first question", "second question")):
        llm.script(f"answer {turn}")
        with recorded_sql(app) as sql:
            r = await client.post(f"{P}/sessions/{sid}/messages", headers=h["ann"], json={"prompt": prompt})
        assert r.status_code == 200, r.text
        updates = [s for s in sql if s.startswith("update genai_playground_sessions")]
        assert len(updates) == 1 and not [s for s in sql if "max(" in s], sql
    messages = (await client.get(f"{P}/sessions/{sid}", headers=h["ann"])).json()["session"]["messages"]
    assert [m["content"] for m in messages] == ["first question", "answer 0", "second question", "answer 1"]


class _RecordingLLM:
    """An LLM client stand-in that notes when its stream is opened."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def chat_stream_reads(self, messages, **options):
        self.opened.set()
        yield [ChatDelta(content="hello ")]
        yield [ChatDelta(content="there", finish_reason="stop")]


def _temporary_turn(app, llm: _RecordingLLM) -> Turn:
    return Turn(
        kernel=app.state.kernel,
        user_id="u1",
        kind="chat",
        model_id="m",
        provider_slug="fake",
        llm=llm,
        runtime_model="m",
        prompt="hi",
        messages=[{"role": "user", "content": "hi"}],
        session_id=None,
    )


async def test_the_upstream_stream_opens_before_the_response_body_is_read(app):
    """Time to first token: the model call starts with the response, overlapping the handler's
    return and the header write, not after the first read of the body."""
    llm = _RecordingLLM()
    response = await stream(_temporary_turn(app, llm))
    await asyncio.wait_for(llm.opened.wait(), 5)  # the response has not been sent yet
    body, _ = await _asgi_run(response)
    assert [e for e, _ in parse_events(body.decode())] == ["delta", "delta", "complete"]
    await settle()


async def test_the_upstream_request_goes_out_before_the_response_headers(app):
    """The headers' write through the middleware stack comes after the model call has started,
    not before it (time to first token runs from the upstream request)."""
    llm = _RecordingLLM()
    opened_at_start: list[bool] = []

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        if message["type"] == "http.response.start":
            opened_at_start.append(llm.opened.is_set())

    await (await stream(_temporary_turn(app, llm)))({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)
    await settle()
    assert opened_at_start == [True]


async def test_the_upstream_request_goes_out_before_the_request_session_is_rolled_back(app):
    """The streamed routes release the request's session after the model call has started: the
    rollback is not on the path to the first token."""
    llm = _RecordingLLM()
    opened_at_rollback: list[bool] = []

    class RequestSession:
        async def rollback(self) -> None:  # a read-only SQLite session's rollback: it never suspends
            opened_at_rollback.append(llm.opened.is_set())

    response = await _stream_after_rollback(RequestSession(), _temporary_turn(app, llm))
    body, _ = await _asgi_run(response)
    await settle()
    assert opened_at_rollback == [True]
    assert [e for e, _ in parse_events(body.decode())] == ["delta", "delta", "complete"]


async def _asgi_run(response) -> tuple[bytes, list[dict]]:
    """Send `response` as a server would (ASGI 2.3: the disconnect comes once the response is
    complete); its body and the messages sent."""
    sent: list[dict] = []
    complete = asyncio.Event()

    async def receive():
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    await response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), sent


async def test_a_relay_whose_response_ends_unread_is_cancelled(app):
    """A response that ends before its body was read (the client left at once) still stops the relay."""
    llm = _RecordingLLM()
    response = await stream(_temporary_turn(app, llm))

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        raise RuntimeError("client gone")

    with pytest.raises(RuntimeError):
        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    await settle()
    assert response.relay.done()


async def _streaming_server(hold_open_after_done: bool) -> tuple[asyncio.Server, list[int]]:
    """A keep-alive HTTP/1.1 server answering every request with a two-token SSE stream; it counts
    the connections it accepted. With `hold_open_after_done` the body stays open after `[DONE]`."""
    accepted = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")
                )
                await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                )
                for event in (b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n', b"data: [DONE]\n\n"):
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                if hold_open_after_done:
                    await writer.drain()
                    await asyncio.sleep(5)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0), accepted


async def test_streamed_answers_reuse_the_upstream_connection():
    """Each turn used to close its connection at `[DONE]` (the body's end unread) and open a new
    one before its first token."""
    server, accepted = await _streaming_server(hold_open_after_done=False)
    port = server.sockets[0].getsockname()[1]
    async with server, ProviderClient(f"http://127.0.0.1:{port}/v1", name="llm") as http:
        llm = LLMClient(http, "m")
        for _ in range(3):
            assert await collect(llm.chat_stream([{"role": "user", "content": "hi"}])) == "a"
    assert accepted[0] == 1


async def test_a_body_held_open_after_done_does_not_hold_the_answer():
    server, _ = await _streaming_server(hold_open_after_done=True)
    port = server.sockets[0].getsockname()[1]
    async with server, ProviderClient(f"http://127.0.0.1:{port}/v1", name="llm") as http:
        started = time.perf_counter()
        assert await collect(LLMClient(http, "m").chat_stream([{"role": "user", "content": "hi"}])) == "a"
        assert time.perf_counter() - started < 2


async def test_a_client_leaving_after_the_last_token_does_not_undo_the_persistence(llm, app, client):
    """The client disconnects once it has the last delta, while the turn is being persisted: the
    relay used to be cancelled then, rolling the turn back; the answer is kept, complete."""
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    user_id = (await client.get("/v1/auth/me", headers=h["ann"])).json()["user"]["id"]
    turn = _temporary_turn(app, _RecordingLLM())
    turn.session_id, turn.user_id = sid, user_id
    last_delta_sent = asyncio.Event()

    async def receive():
        await last_delta_sent.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if b'"there"' in message.get("body", b""):
            last_delta_sent.set()

    await (await stream(turn))({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)
    await settle()
    messages = (await client.get(f"{P}/sessions/{sid}", headers=h["ann"])).json()["session"]["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [("user", "hi"), ("assistant", "hello there")]
    assert "incomplete" not in messages[1]["metadata"]


async def test_a_session_turn_reads_everything_before_the_model_call_in_one_statement(llm, app, client, monkeypatch):
    """Before the model call a session turn runs one statement: the session, its recent history, its
    model's binding and the login's user row and revocation together (the auth statement and the
    model were two more)."""
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    llm.script("first answer")
    assert (
        await client.post(f"{P}/sessions/{sid}/messages", headers=h["ann"], json={"prompt": "one"})
    ).status_code == 200
    before_model: list[list[str]] = []
    chat_stream_reads = LLMClient.chat_stream_reads

    def noting(self, messages, **options):
        before_model.append(list(sql))
        return chat_stream_reads(self, messages, **options)

    monkeypatch.setattr(LLMClient, "chat_stream_reads", noting)
    llm.script("second answer")
    with recorded_sql(app) as sql:
        r = await client.post(f"{P}/sessions/{sid}/messages/stream", headers=h["ann"], json={"prompt": "two"})
        await settle()
    assert r.status_code == 200, r.text
    [statements] = before_model
    assert len(statements) == 1, statements
    turn = statements[0]
    assert "from genai_playground_sessions" in turn and "join genai_models" in turn, turn
    assert "join genai_binding_resources" in turn, turn
    assert "join users" in turn and "from revoked_tokens" in turn, turn
    events = parse_events(r.text)
    assert events[-1][0] == "complete"
    assert [m["content"] for m in events[-1][1]["session"]["messages"]] == [
        "one",
        "first answer",
        "two",
        "second answer",
    ]
