"""Agent executions through the in-process engine (an engine job): instructions reach the model,
python_exec runs in the sandbox and its output reaches the model and the record, web_search goes
through MCP (unavailable without KILN_MCP_URL), bounded loops, owner-only reads, the taxonomy."""

from __future__ import annotations

import json

import pytest

from kiln.apps.genai.agents.config import AgentSettings
from kiln.providers.sandbox import SandboxSettings
from tests.apps.genai.agents.helpers import EXECUTIONS, project_body, published_agent
from tests.apps.genai.context.helpers import add_docs, create_kb
from tests.apps.genai.helpers import assert_envelope
from tests.apps.genai.playgrounds.helpers import MODEL, chat_ready
from tests.fakes.mcp import fake_mcp  # noqa: F401  (fixture)
from tests.fakes.openai_llm import Reply

needs_bwrap = pytest.mark.skipif(__import__("shutil").which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


def agent_settings(app, **kw) -> None:
    app.state.kernel.set_surface_settings(AgentSettings(_env_file=None, **kw))


async def execute(client, headers, agent_id, prompt="What is 2+3?", **input_extra):
    return await client.post(
        EXECUTIONS, headers=headers, json={"agent_id": agent_id, "input": {"prompt": prompt, **input_extra}}
    )


@needs_bwrap
async def test_python_exec_tool_loop(llm, app, client):
    h = await chat_ready(app, client)
    agent_settings(app)
    agent = await published_agent(client, h["ann"])
    llm.script(Reply(tool_calls=[{"name": "python_exec", "arguments": {"code": "print(2+3)"}}]), "2+3 is 5.")
    r = await execute(client, h["ann"], agent)
    assert r.status_code == 201, r.text
    execution = r.json()["execution"]
    assert execution["status"] == "succeeded" and execution["result"]["output_text"] == "2+3 is 5."
    call = execution["result"]["tool_calls"][0]
    assert call["tool_id"] == "tool.python_exec" and call["status"] == "ok"
    assert call["result"]["stdout"] == "5\n" and call["result"]["exit_code"] == 0
    assert call["result"]["sandbox"] == "bubblewrap"
    first, second = llm.chat_calls[-2]["json"], llm.chat_calls[-1]["json"]
    assert first["messages"][0] == {"role": "system", "content": project_body()["instructions"]}
    assert first["tools"][0]["function"]["name"] == "python_exec"
    tool_msg = second["messages"][-1]
    assert tool_msg["role"] == "tool" and json.loads(tool_msg["content"])["stdout"] == "5\n"
    assert len(execution["result"]["model_calls"]) == 2
    # Owner-only reads.
    assert (await client.get(f"{EXECUTIONS}/{execution['id']}", headers=h["ann"])).status_code == 200
    assert_envelope(await client.get(f"{EXECUTIONS}/{execution['id']}", headers=h["bob"]), 404, "execution_not_found")
    assert (await client.get(f"{EXECUTIONS}/{execution['id']}", headers=h["sa"])).status_code == 200
    # Another user may not execute ann's private agent.
    assert_envelope(await execute(client, h["bob"], agent), 403, "EXEC_POLICY_DENIED")


@needs_bwrap
async def test_sandbox_timeout_and_bounded_rounds(llm, app, client):
    h = await chat_ready(app, client)
    agent_settings(app)
    app.state.kernel.set_surface_settings(SandboxSettings(_env_file=None, wall_seconds=2, cpu_seconds=2))
    agent = await published_agent(client, h["ann"])
    llm.script(Reply(tool_calls=[{"name": "python_exec", "arguments": {"code": "while True: pass"}}]), "It hung.")
    execution = (await execute(client, h["ann"], agent)).json()["execution"]
    call = execution["result"]["tool_calls"][0]
    assert call["result"]["timed_out"] is True and call["result"]["error"] == "EXEC_TIMEOUT"
    assert call["duration_ms"] < 4500
    # A model that never stops calling tools: bounded by the policy's rounds and per-tool calls.
    llm.responder = lambda req: Reply(tool_calls=[{"name": "python_exec", "arguments": {"code": "print(1)"}}])
    r = await execute(client, h["ann"], agent)
    body = assert_envelope(r, 500, "EXEC_INTERNAL_ERROR")
    trace = body["details"]["execution"]
    assert body["details"]["reason"] == "max_rounds_exceeded" and trace["status"] == "failed"
    assert [c["status"] for c in trace["result"]["tool_calls"]] == ["ok", "ok", "refused"]


async def test_web_search_through_mcp(llm, app, client, fake_mcp):  # noqa: F811
    h = await chat_ready(app, client)
    assert (await client.put("/v1/runtime/profile", headers=h["sa"], json={"profile": "online"})).status_code == 200
    agent = await published_agent(
        client,
        h["ann"],
        id="searcher",
        tool_refs=["tool.web_search"],
        tool_policy={},
        instructions="Search before answering.",
    )
    # No MCP server configured: the tool is unavailable and the record says so (no invented results).
    agent_settings(app)
    llm.script(Reply(tool_calls=[{"name": "web_search", "arguments": {"query": "kiln agents"}}]), "No search.")
    execution = (await execute(client, h["ann"], agent, "news?")).json()["execution"]
    call = execution["result"]["tool_calls"][0]
    assert call["status"] == "unavailable" and call["result"]["error"] == "tool_unavailable"
    assert "KILN_MCP_URL" in json.loads(llm.chat_calls[-1]["json"]["messages"][-1]["content"])["message"]
    # With the MCP server.
    agent_settings(app, mcp_url=fake_mcp.url)
    fake_mcp.sse = True
    llm.script(
        Reply(tool_calls=[{"name": "web_search", "arguments": {"query": "kiln agents", "top_k": 2}}]),
        "Kiln 2 ships agents.",
    )
    execution = (await execute(client, h["ann"], agent, "news?")).json()["execution"]
    call = execution["result"]["tool_calls"][0]
    assert call["status"] == "ok" and call["result"]["results"][0]["url"] == "https://example.org/kiln"
    assert [m["method"] for m in fake_mcp.calls] == ["initialize", "notifications/initialized", "tools/call"]
    # MCP server down: the canonical upstream error.
    agent_settings(app, mcp_url="http://127.0.0.1:9/mcp")
    llm.script(Reply(tool_calls=[{"name": "web_search", "arguments": {"query": "x"}}]))
    assert_envelope(await execute(client, h["ann"], agent, "news?"), 503, "EXEC_UPSTREAM_UNAVAILABLE")
    # Offline: the online-only tool is refused before running.
    await client.put("/v1/runtime/profile", headers=h["sa"], json={"profile": "offline"})
    assert_envelope(await execute(client, h["ann"], agent, "news?"), 403, "EXEC_TOOL_NOT_ALLOWED")


async def test_execution_taxonomy(llm, app, client):
    h = await chat_ready(app, client)
    agent_settings(app)
    assert_envelope(await execute(client, h["ann"], "agent.nope"), 404, "EXEC_AGENT_NOT_FOUND")
    r = await client.post(
        "/v1/catalog/agents",
        headers=h["sa"],
        json={"id": "agent.drafty", "name": "Drafty", "instructions": "x", "publish": False, "visibility": "public"},
    )
    assert r.status_code in (200, 201), r.text
    assert_envelope(await execute(client, h["sa"], "agent.drafty"), 404, "EXEC_AGENT_VERSION_NOT_FOUND")
    assert_envelope(
        await execute(client, h["ann"], "agent.knowledge_chat", model="ghost"), 403, "EXEC_MODEL_NOT_ALLOWED"
    )
    assert_envelope(
        await client.post(EXECUTIONS, headers=h["ann"], json={"agent_id": "agent.knowledge_chat", "input": {}}),
        400,
        "EXEC_INVALID_INPUT",
    )
    # A retrieval index that is not a bound knowledge base (§7.3-2).
    assert_envelope(
        await execute(
            client, h["ann"], "agent.knowledge_chat", model=MODEL["id"], retrieval={"index": "SomeOtherClass"}
        ),
        403,
        "EXEC_POLICY_DENIED",
    )
    # The LLM is down.
    llm.script(Reply(status=503), Reply(status=503), Reply(status=503))
    body = assert_envelope(
        await execute(client, h["ann"], "agent.knowledge_chat", model=MODEL["id"]), 503, "EXEC_UPSTREAM_UNAVAILABLE"
    )
    assert body["details"]["execution"]["status"] == "failed"
    # Knowledge chat agent with a bound KB: references reach the model.
    kb = await create_kb(client, h["sa"])
    await add_docs(client, h["sa"], kb["id"])
    llm.script("Bees make honey [1].")
    r = await execute(
        client,
        h["ann"],
        "agent.knowledge_chat",
        "How do bees make honey?",
        model=MODEL["id"],
        retrieval={"index": kb["index_name"], "top_k": 2},
    )
    assert r.status_code == 201, r.text
    result = r.json()["execution"]["result"]
    assert result["retrieval_calls"][0]["results"][0]["title"] == "Honey bees"
    assert "[1] Honey bees" in llm.chat_calls[-1]["json"]["messages"][0]["content"]
