"""Registry (visibility on every read), typed catalog (versions, platform agents undeletable),
policy rules, quotes and the quote of the day."""

from __future__ import annotations

from tests.apps.genai.helpers import assert_envelope, login, make_user, role_headers

AGENT = {
    "name": "Helper",
    "description": "d",
    "instructions": "Be brief.",
    "default_model_ref": None,
    "tool_refs": ["tool.python_exec"],
    "runtime_constraints": {"internet_required": False, "sandbox_required": False},
}


async def test_registry_visibility_is_enforced_on_every_read(app, client):
    h = await role_headers(app, client)
    await make_user(app, "other@example.com")
    other = await login(client, "other@example.com")
    r = await client.post(
        "/v1/registry/agents", headers=h["user"], json={"id": "agent.secret", "spec": {"instructions": "hidden prompt"}}
    )
    assert r.status_code == 201, r.text
    assert r.json()["entity"]["visibility"] == "private"
    assert_envelope(await client.get("/v1/registry/agents/agent.secret", headers=other), 404, "entity_not_found")
    listed = (await client.get("/v1/registry/agents", headers=other)).json()["items"]
    assert "agent.secret" not in [i["id"] for i in listed] and "hidden prompt" not in str(listed)
    assert_envelope(
        await client.post(
            "/v1/registry/agents/agent.secret/versions", headers=other, json={"version": "v2", "spec": {}}
        ),
        404,
    )
    assert_envelope(
        await client.post("/v1/registry/agents/agent.secret/share", headers=other, json={"grantee_type": "public"}), 404
    )
    # The owner shares it with one user: that user reads it, others still do not.
    me = (await client.get("/auth/me", headers=other)).json()["user"]
    r = await client.post(
        "/v1/registry/agents/agent.secret/share",
        headers=h["user"],
        json={"grantee_type": "user", "grantee_id": me["id"], "permission": "view"},
    )
    assert r.status_code == 201
    assert (await client.get("/v1/registry/agents/agent.secret", headers=other)).status_code == 200
    assert_envelope(await client.get("/v1/registry/agents/agent.secret", headers=h["admin"]), 404)
    assert (await client.get("/v1/registry/agents/agent.secret", headers=h["superadmin"])).status_code == 200
    # Versions: owner only; the new one becomes current.
    assert_envelope(
        await client.post(
            "/v1/registry/agents/agent.secret/versions", headers=other, json={"version": "v2", "spec": {}}
        ),
        403,
        "insufficient_role",
    )
    r = await client.post(
        "/v1/registry/agents/agent.secret/versions",
        headers=h["user"],
        json={"version": "v2", "spec": {"instructions": "new"}, "publish": True},
    )
    assert r.json()["entity"]["current_version"] == "v2" and r.json()["entity"]["status"] == "published"
    detail = (await client.get("/v1/registry/agents/agent.secret", headers=h["user"])).json()
    assert [v["version"] for v in detail["versions"]] == ["v1", "v2"]
    assert_envelope(
        await client.post("/v1/registry/agents", headers=h["user"], json={"id": "agent.pub", "visibility": "public"}),
        403,
        "insufficient_role",
    )
    assert_envelope(
        await client.post("/v1/registry/agents", headers=h["user"], json={"id": "agent.secret"}),
        409,
        "duplicate_entity",
    )
    # Built-in public tools are readable by anyone; registry models are superadmin-only.
    tools = [i["id"] for i in (await client.get("/v1/registry/tools", headers=other)).json()["items"]]
    assert {"tool.web_search", "tool.python_exec"} <= set(tools)
    assert_envelope(await client.get("/v1/registry/models", headers=h["admin"]), 403, "insufficient_role")
    assert (await client.get("/v1/registry/models", headers=h["superadmin"])).status_code == 200
    assert_envelope(await client.get("/v1/registry/widgets", headers=h["user"]), 400, "invalid_entity_type")


async def test_catalog_agents_and_tools(app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    agents = (await client.get("/v1/catalog/agents", headers=sa)).json()["agents"]
    platform = next(a for a in agents if a["id"] == "agent.knowledge_chat")
    assert platform["is_platform_agent"] is True and platform["agent_kind"] == "platform"
    assert_envelope(
        await client.delete("/v1/catalog/agents/agent.knowledge_chat", headers=sa),
        409,
        "platform_agent_delete_forbidden",
    )
    r = await client.post("/v1/catalog/agents", headers=sa, json={**AGENT, "id": "agent.helper", "publish": False})
    assert r.status_code == 201, r.text
    agent = r.json()["agent"]
    assert agent["current_version"] == "v1" and agent["published"] is False and agent["agent_kind"] == "user"
    r = await client.put("/v1/catalog/agents/agent.helper", headers=sa, json={**AGENT, "name": "H2", "publish": True})
    assert r.json()["agent"]["current_version"] == "v2" and r.json()["agent"]["spec"]["name"] == "H2"
    v = (await client.post("/v1/catalog/agents/agent.helper/validate", headers=sa)).json()["validation"]
    assert v["valid"] is True and v["resolved_tools"][0]["id"] == "tool.python_exec"
    assert v["derived_runtime_requirements"]["sandbox_required"] is True
    assert_envelope(
        await client.post("/v1/catalog/agents", headers=sa, json={**AGENT, "publish": True, "instructions": ""}),
        400,
        "invalid_instructions",
    )
    assert_envelope(
        await client.post(
            "/v1/catalog/tools", headers=sa, json={"name": "t", "transport": "ftp", "tool_name": "x", "publish": True}
        ),
        400,
        "invalid_transport",
    )
    r = await client.post(
        "/v1/catalog/tools",
        headers=sa,
        json={
            "id": "tool.echo",
            "name": "Echo",
            "description": "",
            "transport": "mcp",
            "connection_profile_ref": "default",
            "tool_name": "echo",
            "input_schema": {},
            "output_schema": {},
            "safety_policy": {},
            "offline_compatible": True,
            "publish": True,
        },
    )
    assert r.status_code == 201 and r.json()["tool"]["published"] is True
    for method, path in (
        ("GET", "/v1/catalog/agents"),
        ("GET", "/v1/catalog/tools"),
        ("POST", "/v1/catalog/tools/tool.echo/validate"),
    ):
        assert_envelope(await client.request(method, path, headers=h["admin"]), 403, "insufficient_role")
    # DELETE: any user may call it, but only the owner or a superadmin deletes; others get 404.
    assert_envelope(await client.delete("/v1/catalog/agents/agent.helper", headers=h["user"]), 404)
    assert (await client.delete("/v1/catalog/agents/agent.helper", headers=sa)).status_code == 200


async def test_policy_rules(app, client):
    h = await role_headers(app, client)
    r = await client.post(
        "/v1/policy/rules",
        headers=h["superadmin"],
        json={
            "scope_type": "user",
            "scope_id": "u1",
            "resource_id": "agent.x",
            "effect": "deny",
            "rule": {"action": "execute"},
        },
    )
    assert r.status_code == 201 and r.json()["rule"]["effect"] == "deny"
    assert_envelope(
        await client.post("/v1/policy/rules", headers=h["superadmin"], json={"scope_type": "user"}),
        400,
        "invalid_policy_rule",
    )
    rules = (await client.get("/v1/policy/rules?scope_id=u1", headers=h["superadmin"])).json()["rules"]
    assert len(rules) == 1
    await client.post(
        "/v1/policy/rules",
        headers=h["superadmin"],
        json={"scope_type": "user", "scope_id": "u1", "resource_id": "*", "effect": "allow", "rule": {"action": "*"}},
    )
    from kiln.apps.genai.policy.service import decide

    async with app.state.kernel.db.session() as session:
        assert await decide(session, "u1", "agent.x", "execute") == "deny"  # a matching deny wins
        assert await decide(session, "u1", "agent.y", "execute") == "allow"
        assert await decide(session, "u2", "agent.x", "execute") is None
    assert_envelope(await client.get("/v1/policy/rules", headers=h["admin"]), 403, "insufficient_role")


async def test_quotes(app, client):
    h = await role_headers(app, client)
    r = await client.get("/v1/content/quote-of-the-day?lang=es")
    assert r.status_code == 200 and r.json()["quote"]["language"] == "es"
    again = await client.get("/v1/content/quote-of-the-day?lang=es")
    assert again.json()["quote"]["id"] == r.json()["quote"]["id"]  # deterministic per day
    assert (await client.get("/v1/content/quote-of-the-day?lang=xx")).json()["quote"]["language"] == "en"
    summary = (await client.get("/v1/quotes/summary", headers=h["admin"])).json()["summary"]
    assert summary["total"] >= 10 and {b["value"] for b in summary["by_language"]} == {"en", "es"}
    body = {
        "language": "en",
        "text": "A new line.",
        "author": "Me",
        "source_universe": "Tests",
        "tone": "calm",
        "tags": ["t"],
        "is_active": True,
        "is_approved": True,
        "origin": "local",
        "external_ref": "",
    }
    r = await client.post("/v1/quotes", json=body, headers=h["admin"])
    assert r.status_code == 201, r.text
    qid = r.json()["quote"]["id"]
    assert_envelope(await client.post("/v1/quotes", json=body, headers=h["admin"]), 409, "duplicate_quote")
    r = await client.put(f"/v1/quotes/{qid}", json={**body, "tone": "bold"}, headers=h["admin"])
    assert r.json()["quote"]["tone"] == "bold"
    page = (await client.get("/v1/quotes?tone=bold&page=1&page_size=5", headers=h["admin"])).json()
    assert page["total"] == 1 and page["items"][0]["id"] == qid and page["filters"] == {"tone": "bold"}
    assert_envelope(await client.get("/v1/quotes/99999999999", headers=h["admin"]), 404, "quote_not_found")
    assert_envelope(await client.get("/v1/quotes", headers=h["user"]), 403, "insufficient_role")
    assert_envelope(await client.get("/v1/quotes?is_active=maybe", headers=h["admin"]), 400, "invalid_filter")
