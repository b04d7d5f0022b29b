"""Agent test helpers: a published project agent over the bound chat model."""

from __future__ import annotations

from tests.apps.genai.playgrounds.helpers import MODEL

PROJECTS = "/v1/agent-projects"
EXECUTIONS = "/v1/agent-executions"


def project_body(pid: str = "calc", **extra) -> dict:
    return {
        "id": pid,
        "name": "Calculator",
        "description": "Computes with Python",
        "instructions": "You are a careful calculator. Use python_exec for arithmetic.",
        "default_model_ref": MODEL["id"],
        "tool_refs": ["tool.python_exec"],
        "workflow_definition": {"steps": [{"type": "llm"}, {"type": "tool", "tool": "tool.python_exec"}]},
        "tool_policy": {"max_rounds": 3, "tools": {"tool.python_exec": {"max_calls": 2}}},
        "runtime_constraints": {"internet_required": False, "sandbox_required": True},
        **extra,
    }


async def published_agent(client, headers, **extra) -> str:
    body = project_body(**extra)
    r = await client.post(PROJECTS, headers=headers, json=body)
    assert r.status_code == 201, r.text
    r = await client.post(f"{PROJECTS}/{body['id']}/validate", headers=headers)
    assert r.json()["validation"]["valid"] is True, r.text
    r = await client.post(f"{PROJECTS}/{body['id']}/publish", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["publish_result"]["agent_id"]
