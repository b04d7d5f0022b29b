"""Agent projects: owner-scoped CRUD, versions, validation, publish gated on a passing validation
of the current version, compiled to a catalog agent keeping the workflow and the tool policy."""

from __future__ import annotations

import pytest

from tests.apps.genai.agents.helpers import PROJECTS, project_body
from tests.apps.genai.helpers import assert_envelope
from tests.apps.genai.playgrounds.helpers import chat_ready


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


async def test_project_lifecycle(llm, app, client):
    h = await chat_ready(app, client)
    r = await client.post(PROJECTS, headers=h["ann"], json=project_body())
    assert r.status_code == 201, r.text
    project = r.json()["agent_project"]
    assert project["current_version"] == 1 and project["spec"]["workflow_definition"]["steps"][0]["type"] == "llm"
    assert_envelope(await client.post(PROJECTS, headers=h["ann"], json=project_body()), 409, "agent_project_exists")
    for method, path in (("GET", ""), ("PUT", ""), ("POST", "/validate"), ("POST", "/publish")):
        r = await client.request(method, f"{PROJECTS}/calc{path}", headers=h["bob"], json=project_body())
        assert_envelope(r, 404, "agent_project_not_found")
    assert (await client.get(PROJECTS, headers=h["bob"])).json()["agent_projects"] == []
    assert (await client.get(f"{PROJECTS}/calc", headers=h["sa"])).status_code == 200

    assert_envelope(await client.post(f"{PROJECTS}/calc/publish", headers=h["ann"]), 409, "agent_project_not_validated")
    r = await client.post(f"{PROJECTS}/calc/validate", headers=h["ann"])
    validation = r.json()["validation"]
    assert validation["valid"] is True and validation["resolved_tools"][0]["id"] == "tool.python_exec"
    assert validation["derived_runtime_requirements"]["sandbox_required"] is True
    r = await client.post(f"{PROJECTS}/calc/publish", headers=h["ann"])
    assert r.status_code == 200, r.text
    result = r.json()["publish_result"]
    assert result["agent_id"] == "agent.project.calc" and r.json()["agent_project"]["published_agent_id"]
    spec = result["catalog_agent"]["spec"]
    assert spec["workflow_definition"] == project_body()["workflow_definition"]
    assert spec["tool_policy"] == project_body()["tool_policy"]
    assert spec["instructions"].startswith("You are a careful calculator")
    catalog = (await client.get("/v1/catalog/agents/agent.project.calc", headers=h["sa"])).json()
    assert catalog["agent"]["spec"]["tool_policy"]["tools"]["tool.python_exec"]["max_calls"] == 2, catalog

    # A new version must be validated again; an invalid one never publishes.
    bad = project_body(tool_policy={"tools": {"tool.web_search": {"max_calls": 1}}, "max_rounds": 99})
    r = await client.put(f"{PROJECTS}/calc", headers=h["ann"], json=bad)
    assert r.json()["agent_project"]["current_version"] == 2 and r.json()["agent_project"]["validated_version"] is None
    assert_envelope(await client.post(f"{PROJECTS}/calc/publish", headers=h["ann"]), 409, "agent_project_not_validated")
    validation = (await client.post(f"{PROJECTS}/calc/validate", headers=h["ann"])).json()["validation"]
    assert validation["valid"] is False and len(validation["errors"]) == 2
    assert_envelope(await client.post(f"{PROJECTS}/calc/publish", headers=h["ann"]), 409, "agent_project_not_validated")
    await client.put(f"{PROJECTS}/calc", headers=h["ann"], json=project_body(instructions="Version three."))
    await client.post(f"{PROJECTS}/calc/validate", headers=h["ann"])
    r = await client.post(f"{PROJECTS}/calc/publish", headers=h["ann"])
    assert r.json()["publish_result"]["catalog_agent"]["current_version"] == "v2"


async def test_project_input_bounds(llm, app, client):
    h = await chat_ready(app, client)
    for body, code in (
        (project_body(workflow_definition=[1]), "invalid_workflow_definition"),
        (project_body(tool_policy={"x": "y" * 30000}), "invalid_tool_policy"),
        (project_body(instructions=""), "invalid_instructions"),
        (project_body(id="Bad Id!"), "invalid_agent_project_id"),
        (project_body(visibility="public"), "insufficient_role"),
    ):
        r = await client.post(PROJECTS, headers=h["ann"], json=body)
        assert r.status_code in (400, 403) and r.json()["error"] == code, r.text
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["n"] = {}
        node = node["n"]
    assert_envelope(
        await client.post(PROJECTS, headers=h["ann"], json=project_body(workflow_definition=deep)),
        400,
        "invalid_workflow_definition",
    )
