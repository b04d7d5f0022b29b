"""ModelOps lifecycle (§3.6 eligibility), visibility, sharing, and inference through the active binding."""

from __future__ import annotations

import pytest

from tests.apps.genai.helpers import assert_envelope, login, make_user, role_headers
from tests.apps.genai.modelops_helpers import active_deployment, bind_llm, ready_model


@pytest.fixture
def local_llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


LOCAL = {
    "id": "qwen-local",
    "name": "Qwen local",
    "provider": "vllm",
    "backend": "local",
    "task_key": "llm",
    "provider_model_id": "fake-chat",
}


async def test_local_model_lifecycle_and_inference_offline(local_llm, app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    r = await client.post("/v1/modelops/models", json=LOCAL, headers=sa)
    assert r.status_code == 201 and r.json()["model"]["lifecycle_state"] == "registered"
    assert_envelope(await client.post("/v1/modelops/models/qwen-local/activate", headers=sa), 409, "validation_failed")
    r = await client.post("/v1/modelops/models/qwen-local/test", json={"inputs": {"prompt": "hello there"}}, headers=sa)
    assert r.status_code == 200, r.text
    run = r.json()["test_run"]
    assert r.json()["result"]["response_text"] == "hello there" and run["result"] == "success"
    assert local_llm.chat_calls[-1]["json"]["model"] == "fake-chat"
    assert_envelope(
        await client.post("/v1/modelops/models/qwen-local/validate", json={"test_run_id": "nope"}, headers=sa),
        404,
        "test_run_not_found",
    )
    r = await client.post("/v1/modelops/models/qwen-local/validate", json={"test_run_id": run["id"]}, headers=sa)
    assert r.json()["model"]["is_validation_current"] is True
    assert_envelope(
        await client.post("/v1/modelops/models/qwen-local/validate", json={"test_run_id": run["id"]}, headers=sa),
        409,
        "validation_already_current",
    )
    assert (await client.post("/v1/modelops/models/qwen-local/activate", headers=sa)).status_code == 200

    dep = await active_deployment(client, sa)
    llm = next(b for b in dep["bindings"] if b["capability"] == "llm_inference")
    # Not bound yet: the reference's error.
    assert_envelope(
        await client.post("/v1/models/inference", json={"model": "qwen-local", "prompt": "hi"}, headers=h["user"]),
        409,
        "model_not_bound",
    )
    dep = await bind_llm(client, sa, dep["id"], llm["provider"]["id"], ["qwen-local"])
    assert next(b for b in dep["bindings"] if b["capability"] == "llm_inference")["configuration_status"]["is_ready"]
    r = await client.post(
        "/v1/models/inference",
        headers=h["user"],
        json={"model": "qwen-local", "prompt": "what is up", "history": [{"role": "user", "content": "earlier"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "what is up"
    assert [m["content"] for m in local_llm.chat_calls[-1]["json"]["messages"]] == ["earlier", "what is up"]
    r = await client.post(
        "/v1/models/generate", headers=h["user"], json={"model_id": "qwen-local", "prompt": "gen", "max_tokens": 5}
    )
    assert r.status_code == 200 and r.json()["output"] == "gen"
    assert local_llm.chat_calls[-1]["json"]["max_tokens"] == 5
    usage = (await client.get("/v1/modelops/models/qwen-local/usage", headers=h["user"])).json()["usage"]
    assert usage["total_requests"] == 2
    assert_envelope(
        await client.post("/v1/models/generate", headers=h["user"], json={"model_id": "qwen-local", "temperature": 9}),
        400,
        "invalid_input",
    )
    assert_envelope(
        await client.post("/v1/models/inference", headers=h["user"], json={"model": "nope", "prompt": "x"}),
        404,
        "not_found",
    )

    # Lifecycle guards.
    assert_envelope(
        await client.post("/v1/modelops/models/qwen-local/unregister", headers=sa), 409, "invalid_state_transition"
    )
    assert (await client.post("/v1/modelops/models/qwen-local/deactivate", headers=h["admin"])).status_code == 200
    assert_envelope(
        await client.post("/v1/models/inference", json={"model": "qwen-local", "prompt": "hi"}, headers=h["user"]),
        409,
        "model_not_invokable",
    )
    assert (await client.post("/v1/modelops/models/qwen-local/unregister", headers=sa)).status_code == 200
    assert_envelope(await client.delete("/v1/modelops/models/qwen-local", headers=sa), 409, "dependencies_unsatisfied")
    validations = (await client.get("/v1/modelops/models/qwen-local/validations", headers=sa)).json()["validations"]
    assert len(validations) == 1 and validations[0]["result"] == "success"
    tests = (await client.get("/v1/modelops/models/qwen-local/tests", headers=h["admin"])).json()["tests"]
    assert len(tests) == 1


async def test_cloud_model_needs_online_and_credential(app, client, fake_llm):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    cred = (
        await client.post(
            "/v1/modelops/credentials",
            headers=sa,
            json={
                "provider": "openai",
                "api_key": "sk-model-key-1",
                "credential_scope": "platform",
                "api_base_url": fake_llm.url,
            },
        )
    ).json()["credential"]
    body = {
        "id": "gpt-x",
        "name": "GPT X",
        "provider": "openai",
        "backend": "external_api",
        "task_key": "llm",
        "provider_model_id": "fake-chat",
        "credential_id": cred["id"],
    }
    r = await client.post("/v1/modelops/models", json=body, headers=sa)
    assert r.status_code == 201 and r.json()["model"]["availability"] == "online_only"
    # Offline (the default): the test is refused and recorded, nothing reaches the provider.
    assert_envelope(
        await client.post("/v1/modelops/models/gpt-x/test", json={"inputs": {"prompt": "x"}}, headers=sa),
        409,
        "offline_not_allowed",
    )
    assert fake_llm.calls == []
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)
    await client.delete("/v1/modelops/models/gpt-x", headers=sa)  # registered: refused, stays
    await ready_model(client, sa, {**body, "id": "gpt-y"})
    assert fake_llm.chat_calls[-1]["headers"].get("Authorization") == "Bearer sk-model-key-1"
    provider = (
        await client.post(
            "/v1/platform/providers",
            headers=sa,
            json={
                "provider_key": "openai_compatible_cloud_llm",
                "slug": "openai",
                "display_name": "OpenAI",
                "endpoint_url": fake_llm.url,
                "secret_refs": {"api_key": f"modelops://credential/{cred['id']}"},
            },
        )
    ).json()
    dep = await active_deployment(client, sa)
    await bind_llm(client, sa, dep["id"], provider["provider"]["id"], ["gpt-y"])
    r = await client.post("/v1/models/inference", json={"model": "gpt-y", "prompt": "cloudy"}, headers=h["user"])
    assert r.status_code == 200 and r.json()["output"] == "cloudy"
    assert_envelope(
        await client.put("/v1/runtime/profile", json={"profile": "offline"}, headers=sa),
        409,
        "offline_provider_blocked",
    )
    # Local models cannot go to a cloud binding.
    assert_envelope(
        await client.put(
            f"/v1/platform/deployments/{dep['id']}/bindings/llm_inference",
            headers=sa,
            json={"provider_id": provider["provider"]["id"], "resources": [{"managed_model_id": "gpt-x"}]},
        ),
        400,
        "resource_not_eligible",
    )


async def test_visibility_and_ownership(app, client):
    h = await role_headers(app, client)
    await make_user(app, "other@example.com")
    other = await login(client, "other@example.com")
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=h["superadmin"])
    cred = (
        await client.post(
            "/v1/modelops/credentials", headers=h["user"], json={"provider": "openai", "api_key": "sk-personal-1"}
        )
    ).json()["credential"]
    personal = {
        "id": "mine",
        "name": "Mine",
        "backend": "external_api",
        "task_key": "llm",
        "provider_model_id": "gpt-4o",
        "credential_id": cred["id"],
    }
    r = await client.post("/v1/modelops/models", json=personal, headers=h["user"])
    assert r.status_code == 201 and r.json()["model"]["owner_type"] == "user", r.text
    assert r.json()["model"]["visibility_scope"] == "private"
    assert_envelope(
        await client.post(
            "/v1/modelops/models", json={**personal, "id": "p2", "owner_type": "platform"}, headers=h["user"]
        ),
        403,
        "forbidden",
    )
    assert_envelope(
        await client.post("/v1/modelops/models", json={**LOCAL, "id": "l2", "owner_type": "user"}, headers=h["user"]),
        403,
        "forbidden",
    )
    # Another user: 404 on read and on every action, and it is not listed.
    assert_envelope(await client.get("/v1/modelops/models/mine", headers=other), 404, "not_found")
    for action in ("activate", "deactivate", "unregister", "register"):
        assert_envelope(await client.post(f"/v1/modelops/models/mine/{action}", headers=other), 404, "not_found")
    assert_envelope(await client.delete("/v1/modelops/models/mine", headers=other), 404, "not_found")
    assert [m["id"] for m in (await client.get("/v1/modelops/models", headers=other)).json()["models"]] == []
    assert [m["id"] for m in (await client.get("/v1/modelops/models", headers=h["user"])).json()["models"]] == ["mine"]
    # Offline, online-only models drop out of listings.
    await client.put("/v1/runtime/profile", json={"profile": "offline"}, headers=h["superadmin"])
    assert (await client.get("/v1/modelops/models", headers=h["user"])).json()["models"] == []
    # Admins do not see private models of users either; superadmins do.
    assert_envelope(await client.get("/v1/modelops/models/mine", headers=h["admin"]), 404)
    assert (await client.get("/v1/modelops/models/mine", headers=h["superadmin"])).status_code == 200
    # Sharing a platform model to a role.
    await client.post("/v1/modelops/models", headers=h["superadmin"], json={**LOCAL, "visibility_scope": "platform"})
    r = await client.put(
        "/v1/modelops/sharing", json={"scope": "user", "model_ids": ["qwen-local"]}, headers=h["admin"]
    )
    assert r.json() == {"assignment": {"scope": "user", "model_ids": ["qwen-local"]}}
    assert_envelope(
        await client.put("/v1/modelops/sharing", json={"scope": "user", "model_ids": ["ghost"]}, headers=h["admin"]),
        400,
        "unknown_model_ids",
    )
    assert_envelope(await client.get("/v1/modelops/sharing", headers=h["user"]), 403, "insufficient_role")
    assert_envelope(
        await client.post("/v1/modelops/models/mine/test", json={}, headers=h["user"]), 403, "insufficient_role"
    )


async def test_loaded_model_slot(local_llm, app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    await client.post("/v1/modelops/models", json=LOCAL, headers=sa)
    await client.post(
        "/v1/modelops/models", json={**LOCAL, "id": "absent", "provider_model_id": "not-served"}, headers=sa
    )
    providers = (await client.get("/v1/platform/providers", headers=sa)).json()["providers"]
    llm = next(p for p in providers if p["slug"] == "llm-local")
    assert llm["load_state"] == "empty"
    r = await client.post(
        f"/v1/platform/providers/{llm['id']}/loaded-model", json={"managed_model_id": "qwen-local"}, headers=sa
    )
    assert r.status_code == 200, r.text
    slot = r.json()["provider"]
    assert slot["load_state"] == "loaded" and slot["loaded_runtime_model_id"] == "fake-chat"
    r = await client.post(
        f"/v1/platform/providers/{llm['id']}/loaded-model", json={"managed_model_id": "absent"}, headers=sa
    )
    assert r.json()["provider"]["load_state"] == "error" and "not-served" in r.json()["provider"]["load_error"]
    r = await client.delete(f"/v1/platform/providers/{llm['id']}/loaded-model", headers=sa)
    assert r.json()["provider"]["load_state"] == "empty"
    emb = next(p for p in providers if p["slug"] == "kiln-local-embeddings")
    assert_envelope(
        await client.post(
            f"/v1/platform/providers/{emb['id']}/loaded-model", json={"managed_model_id": "qwen-local"}, headers=sa
        ),
        409,
        "loaded_model_unsupported",
    )
