"""Playground sessions: CRUD owner-scoped, messages through the active llm binding with history,
SSE streamed as the model generates, persisted also when the client disconnects, temporary turns
and the options."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from kiln.apps.genai.playgrounds import relay
from tests.apps.genai.helpers import assert_envelope
from tests.apps.genai.playgrounds.helpers import (
    MODEL,
    LiveServer,
    P,
    chat_ready,
    new_session,
    parse_events,
    read_events,
)
from tests.fakes.openai_llm import Reply


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


async def test_session_crud_owner_scoped_and_history(llm, app, client):
    h = await chat_ready(app, client)
    assert_envelope(await client.get(f"{P}/sessions"), 401)
    s = await new_session(client, h["ann"])
    assert s["title_source"] == "auto" and s["messages"] == [] and s["model_selection"]["model_id"] == MODEL["id"]
    # Another user sees nothing of it.
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/messages")):
        r = await client.request(method, f"{P}/sessions/{s['id']}{path}", headers=h["bob"], json={"prompt": "x"})
        assert_envelope(r, 404, "playground_session_not_found")
    assert (await client.get(f"{P}/sessions", headers=h["bob"])).json()["sessions"] == []

    llm.script("Paris is the capital.")
    r = await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "Capital of France?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "Paris is the capital." and body["sources"] == [] and body["retrieval"] is None
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["session"]["title"] == "Capital of France?" and body["session"]["message_count"] == 2
    llm.script("About 2 million.")
    r = await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "Population?"})
    sent = llm.chat_calls[-1]["json"]
    assert sent["model"] == "fake-chat"
    assert [(m["role"], m["content"]) for m in sent["messages"]] == [
        ("user", "Capital of France?"),
        ("assistant", "Paris is the capital."),
        ("user", "Population?"),
    ]
    detail = (await client.get(f"{P}/sessions/{s['id']}", headers=h["ann"])).json()["session"]
    assert [m["content"] for m in detail["messages"]] == [
        "Capital of France?",
        "Paris is the capital.",
        "Population?",
        "About 2 million.",
    ]

    r = await client.patch(f"{P}/sessions/{s['id']}", headers=h["ann"], json={"title": "Geography"})
    assert r.json()["session"]["title"] == "Geography" and r.json()["session"]["title_source"] == "manual"
    listed = (await client.get(f"{P}/sessions?playground_kind=chat", headers=h["ann"])).json()["sessions"]
    assert [x["id"] for x in listed] == [s["id"]] and "messages" not in listed[0]
    assert_envelope(await client.get(f"{P}/sessions?playground_kind=nope", headers=h["ann"]), 400)
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": ""}),
        400,
        "invalid_prompt",
    )
    assert_envelope(await client.post(f"{P}/sessions", headers=h["ann"], json={"playground_kind": "x"}), 400)
    assert (await client.delete(f"{P}/sessions/{s['id']}", headers=h["ann"])).json() == {"deleted": True}
    assert_envelope(await client.get(f"{P}/sessions/{s['id']}", headers=h["ann"]), 404)


async def test_unbound_model_and_no_model(llm, app, client):
    h = await chat_ready(app, client)
    s = await new_session(client, h["ann"], model_selection={"model_id": None})
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "hi"}),
        400,
        "model_required",
    )
    await client.patch(f"{P}/sessions/{s['id']}", headers=h["ann"], json={"model_selection": {"model_id": "ghost"}})
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "hi"}), 404, "not_found"
    )
    # An LLM that is down: the contract's 502, nothing persisted.
    llm.script(Reply(status=500, content="boom"), Reply(status=500), Reply(status=500))
    s = await new_session(client, h["ann"])
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "hi"}),
        502,
        "llm_unreachable",
    )
    assert (await client.get(f"{P}/sessions/{s['id']}", headers=h["ann"])).json()["session"]["message_count"] == 0


async def test_options_only_bound_models(llm, app, client):
    h = await chat_ready(app, client)
    opts = (await client.get(f"{P}/options", headers=h["ann"])).json()
    assert [m["id"] for m in opts["models"]] == [MODEL["id"]]
    assert {a["assistant_ref"] for a in opts["assistants"]} >= {"assistant.playground.chat", "agent.knowledge_chat"}
    assert opts["knowledge_bases"] == [] and opts["configuration_message"]
    kinds = (await client.get(f"{P}/model-options?playground_kind=knowledge", headers=h["ann"])).json()
    assert [a["assistant_ref"] for a in kinds["assistants"]] == ["agent.knowledge_chat"]
    assert (await client.get(f"{P}/knowledge-base-options", headers=h["ann"])).json()["knowledge_bases"] == []


async def test_temporary_messages_not_persisted(llm, app, client):
    h = await chat_ready(app, client)
    llm.script("fine")
    r = await client.post(
        f"{P}/temporary/messages",
        headers=h["ann"],
        json={
            "playground_kind": "chat",
            "model_selection": {"model_id": MODEL["id"]},
            "prompt": "and you?",
            "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "fine" and "session" not in r.json()
    assert [m["content"] for m in llm.chat_calls[-1]["json"]["messages"]] == ["hello", "hi", "and you?"]
    llm.script("streamed answer")
    r = await client.post(
        f"{P}/temporary/messages/stream",
        headers=h["ann"],
        json={"model_selection": {"model_id": MODEL["id"]}, "prompt": "go"},
    )
    events = parse_events(r.text)
    assert [e for e, _ in events] == ["delta", "delta", "complete"]
    assert events[-1][1]["output"] == "streamed answer"
    assert (await client.get(f"{P}/sessions", headers=h["ann"])).json()["sessions"] == []


async def test_stream_forwards_deltas_while_generating(llm, app, client):
    h = await chat_ready(app, client)
    s = await new_session(client, h["ann"])
    llm.script(Reply(pieces=["One ", "two ", "three ", "four"], piece_delay=0.3))
    async with LiveServer(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        started = time.perf_counter()
        async with http.stream(
            "POST", f"{P}/sessions/{s['id']}/messages/stream", headers=h["ann"], json={"prompt": "count"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            seen = [(t - started, e, d) async for t, e, d in read_events(response)]
    deltas = [x for x in seen if x[1] == "delta"]
    assert [d["text"] for _, _, d in deltas] == ["One ", "two ", "three ", "four"]
    # The first delta arrived while the model still had ~0.9 s of generating ahead of it, and each
    # later one as it was produced (request setup time varies with the machine's load; gaps do not).
    assert seen[-1][0] - deltas[0][0] > 0.75, seen
    assert all(b[0] - a[0] > 0.2 for a, b in zip(deltas, deltas[1:], strict=False)), seen
    assert seen[-1][1] == "complete" and seen[-1][2]["output"] == "One two three four"
    detail = (await client.get(f"{P}/sessions/{s['id']}", headers=h["ann"])).json()["session"]
    assert detail["messages"][-1]["content"] == "One two three four"
    assert "incomplete" not in detail["messages"][-1]["metadata"]


async def test_stream_client_disconnect_keeps_partial_answer(llm, app, client):
    h = await chat_ready(app, client)
    s = await new_session(client, h["ann"])
    llm.script(Reply(pieces=[f"w{i} " for i in range(20)], piece_delay=0.15))
    async with LiveServer(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
        async with http.stream(
            "POST", f"{P}/sessions/{s['id']}/messages/stream", headers=h["ann"], json={"prompt": "talk"}
        ) as response:
            got = 0
            async for _, event, _ in read_events(response):
                got += event == "delta"
                if got == 2:
                    break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            detail = (await client.get(f"{P}/sessions/{s['id']}", headers=h["ann"])).json()["session"]
            if detail["message_count"] == 2:
                break
        await relay.settle()
    last = detail["messages"][-1]
    assert last["role"] == "assistant" and last["metadata"]["incomplete"] is True
    assert last["content"].startswith("w0 w1") and len(last["content"].split()) < 20


async def test_stream_error_event(llm, app, client):
    h = await chat_ready(app, client)
    s = await new_session(client, h["ann"])
    llm.script(Reply(pieces=["partial "], stream_error="model crashed"))
    r = await client.post(f"{P}/sessions/{s['id']}/messages/stream", headers=h["ann"], json={"prompt": "x"})
    events = parse_events(r.text)
    assert [e for e, _ in events] == ["delta", "error"]
    assert events[-1][1]["error"] == "llm_unreachable" and events[-1][1]["status_code"] == 502
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages/stream", headers=h["bob"], json={"prompt": "x"}), 404
    )
