"""Platform control plane: seeded local-default, providers with secret refs, deployments, bindings,
activation with preflight and audit, the runtime profile failing closed for cloud providers."""

from __future__ import annotations

import socket

import pytest

from kiln.providers.http import OfflineBlocked, ProviderClient
from tests.apps.genai.helpers import assert_envelope, role_headers


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


async def deployments_by_slug(client, headers):
    r = await client.get("/v1/platform/deployments", headers=headers)
    assert r.status_code == 200, r.text
    return {d["slug"]: d for d in r.json()["deployments"]}


async def test_fresh_kiln_seeds_an_active_offline_local_default(app, client):
    h = await role_headers(app, client)
    deps = await deployments_by_slug(client, h["superadmin"])
    assert list(deps) == ["local-default"]
    local = deps["local-default"]
    assert local["is_active"] is True
    caps = {b["capability"]: b for b in local["bindings"]}
    assert caps["embeddings"]["provider"]["slug"] == "kiln-local-embeddings"
    assert caps["vector_store"]["provider"]["slug"] == "kiln-embedded-vector"
    assert caps["vector_store"]["resource_policy"]["selection_mode"] == "dynamic_namespace"
    assert "llm_inference" in local["configuration_status"]["incomplete_capabilities"]
    caps = (await client.get("/v1/platform/capabilities", headers=h["user"])).json()["capabilities"]
    active = {c["capability"]: c["active_provider"] for c in caps}
    assert active["embeddings"]["deployment_profile_slug"] == "local-default" and active["llm_inference"] is None
    profile = (await client.get("/v1/runtime/profile", headers=h["user"])).json()
    assert profile == {"profile": "offline", "locked": False, "source": "default"}
    audit = (await client.get("/v1/platform/activation-audit", headers=h["superadmin"])).json()["activation_audit"]
    assert len(audit) == 1 and audit[0]["deployment_profile"]["slug"] == "local-default"


@pytest.fixture
def llm_env(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    monkeypatch.setenv("KILN_QDRANT_URL", "http://127.0.0.1:1")
    return fake_llm


async def test_servers_are_seeded_only_when_configured(llm_env, app, client):
    h = await role_headers(app, client)
    deps = await deployments_by_slug(client, h["superadmin"])
    assert set(deps) == {"local-default", "local-qdrant"}
    llm = next(b for b in deps["local-default"]["bindings"] if b["capability"] == "llm_inference")
    assert llm["provider"]["slug"] == "llm-local" and llm["provider"]["provider_origin"] == "local"
    qdrant = next(b for b in deps["local-qdrant"]["bindings"] if b["capability"] == "vector_store")
    assert qdrant["provider"]["slug"] == "qdrant-local"


async def test_secret_refs_only_modelops_or_env(app, client, monkeypatch):
    h = await role_headers(app, client)
    body = {
        "provider_key": "openai_compatible_cloud_llm",
        "slug": "cloud",
        "display_name": "Cloud",
        "endpoint_url": "https://api.example.com/v1",
        "secret_refs": {"api_key": "sk-literal-key"},
    }
    r = await client.post("/v1/platform/providers", json=body, headers=h["superadmin"])
    assert_envelope(r, 400, "invalid_secret_ref")
    assert "sk-literal-key" not in r.text
    body["secret_refs"] = {"api_key": "env://CLOUD_KEY"}
    r = await client.post("/v1/platform/providers", json=body, headers=h["superadmin"])
    assert r.status_code == 201, r.text
    provider = r.json()["provider"]
    assert provider["provider_origin"] == "cloud" and provider["secret_refs"] == {"api_key": "env://CLOUD_KEY"}
    r = await client.put(
        f"/v1/platform/providers/{provider['id']}", headers=h["superadmin"], json={**body, "provider_key": "vllm_local"}
    )
    assert_envelope(r, 400, "provider_key_immutable")
    assert_envelope(
        await client.post("/v1/platform/providers", json=body, headers=h["superadmin"]), 409, "duplicate_provider_slug"
    )


async def test_offline_blocks_cloud_everywhere_and_nothing_leaves(app, client, fake_llm, monkeypatch):
    monkeypatch.setenv("CLOUD_KEY", "sk-test-secret-1234")
    h = await role_headers(app, client)
    sa = h["superadmin"]
    r = await client.post(
        "/v1/platform/providers",
        headers=sa,
        json={
            "provider_key": "openai_compatible_cloud_llm",
            "slug": "cloud-llm",
            "display_name": "Cloud LLM",
            "endpoint_url": fake_llm.url,
            "secret_refs": {"api_key": "env://CLOUD_KEY"},
        },
    )
    cloud = r.json()["provider"]
    assert_envelope(
        await client.post(f"/v1/platform/providers/{cloud['id']}/validate", headers=sa), 409, "offline_provider_blocked"
    )
    # The shared client refuses too (process-wide guard), so no route can leak a call.
    http = ProviderClient(fake_llm.url, name="probe", origin="cloud")
    with pytest.raises(OfflineBlocked):
        await http.request("GET", "/models")
    await http.aclose()
    assert fake_llm.calls == []

    deps = await deployments_by_slug(client, sa)
    local = deps["local-default"]
    r = await client.post(
        f"/v1/platform/deployments/{local['id']}/clone", headers=sa, json={"slug": "cloudy", "display_name": "Cloudy"}
    )
    assert r.status_code == 201, r.text
    cloudy = r.json()["deployment_profile"]
    r = await client.put(
        f"/v1/platform/deployments/{cloudy['id']}/bindings/llm_inference",
        headers=sa,
        json={"provider_id": cloud["id"], "resources": []},
    )
    assert r.status_code == 200, r.text
    assert_envelope(
        await client.post(f"/v1/platform/deployments/{cloudy['id']}/activate", headers=sa),
        409,
        "offline_provider_blocked",
    )
    assert fake_llm.calls == []

    assert (await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)).json()[
        "profile"
    ] == "online"
    r = await client.post(f"/v1/platform/providers/{cloud['id']}/validate", headers=sa)
    assert r.status_code == 200 and r.json()["validation"]["health"]["reachable"] is True
    assert fake_llm.calls[-1]["headers"].get("Authorization") == "Bearer sk-test-secret-1234"
    assert "sk-test-secret-1234" not in r.text
    r = await client.post(f"/v1/platform/deployments/{cloudy['id']}/activate", headers=sa)
    assert r.status_code == 200 and r.json()["deployment_profile"]["is_active"] is True
    r = await client.put("/v1/runtime/profile", json={"profile": "offline"}, headers=sa)
    body = assert_envelope(r, 409, "offline_provider_blocked")
    assert body["details"]["providers"][0]["provider_slug"] == "cloud-llm"
    assert_envelope(
        await client.put("/v1/runtime/profile", json={"profile": "offline"}, headers=h["admin"]),
        403,
        "insufficient_role",
    )
    assert_envelope(await client.delete(f"/v1/platform/providers/{cloud['id']}", headers=sa), 409, "provider_in_use")
    assert_envelope(
        await client.delete(f"/v1/platform/deployments/{cloudy['id']}", headers=sa), 409, "deployment_profile_active"
    )


async def test_activation_preflight_names_the_unreachable_provider(app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    r = await client.post(
        "/v1/platform/providers",
        headers=sa,
        json={
            "provider_key": "vllm_local",
            "slug": "dead-llm",
            "display_name": "Dead",
            "endpoint_url": closed_port_url(),
        },
    )
    dead = r.json()["provider"]
    r = await client.post(
        "/v1/platform/deployments",
        headers=sa,
        json={
            "slug": "broken",
            "display_name": "Broken",
            "description": "",
            "bindings": [{"capability": "llm_inference", "provider_id": dead["id"]}],
        },
    )
    assert r.status_code == 201, r.text
    broken = r.json()["deployment_profile"]
    assert broken["is_active"] is False
    body = assert_envelope(
        await client.post(f"/v1/platform/deployments/{broken['id']}/activate", headers=sa),
        409,
        "deployment_profile_validation_failed",
    )
    assert "dead-llm" in body["message"] and body["details"]["failures"][0]["provider_slug"] == "dead-llm"
    # Identity patch, binding validation, delete.
    r = await client.patch(
        f"/v1/platform/deployments/{broken['id']}", headers=sa, json={"display_name": "Renamed", "slug": "renamed"}
    )
    assert (
        r.json()["deployment_profile"]["slug"] == "renamed"
        and r.json()["deployment_profile"]["display_name"] == "Renamed"
    )
    assert_envelope(
        await client.put(
            f"/v1/platform/deployments/{broken['id']}/bindings/embeddings", headers=sa, json={"provider_id": dead["id"]}
        ),
        400,
        "provider_capability_mismatch",
    )
    assert_envelope(
        await client.put(
            f"/v1/platform/deployments/{broken['id']}/bindings/llm_inference",
            headers=sa,
            json={"provider_id": dead["id"], "resources": [{"managed_model_id": "nope"}]},
        ),
        400,
        "resource_not_found",
    )
    assert (await client.delete(f"/v1/platform/deployments/{broken['id']}", headers=sa)).status_code == 200
    assert_envelope(
        await client.get(f"/v1/platform/deployments/{broken['id']}", headers=sa), 404, "deployment_not_found"
    )


PLATFORM_SUPERADMIN_ROUTES = [
    ("GET", "/v1/platform/provider-families"),
    ("GET", "/v1/platform/providers"),
    ("POST", "/v1/platform/providers"),
    ("PUT", "/v1/platform/providers/x"),
    ("DELETE", "/v1/platform/providers/x"),
    ("POST", "/v1/platform/providers/x/validate"),
    ("GET", "/v1/platform/deployments"),
    ("POST", "/v1/platform/deployments"),
    ("PATCH", "/v1/platform/deployments/x"),
    ("PUT", "/v1/platform/deployments/x"),
    ("PUT", "/v1/platform/deployments/x/bindings/llm_inference"),
    ("POST", "/v1/platform/deployments/x/clone"),
    ("DELETE", "/v1/platform/deployments/x"),
    ("POST", "/v1/platform/deployments/x/activate"),
    ("GET", "/v1/platform/activation-audit"),
    ("PUT", "/v1/runtime/profile"),
    ("PATCH", "/auth/users/x/role"),
]


async def test_role_table(app, client):
    h = await role_headers(app, client)
    for method, path in PLATFORM_SUPERADMIN_ROUTES:
        kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        assert_envelope(await client.request(method, path, **kwargs), 401, "missing_auth")
        for role in ("user", "admin"):
            r = await client.request(method, path, headers=h[role], **kwargs)
            assert_envelope(r, 403, "insufficient_role")
        r = await client.request(method, path, headers=h["superadmin"], **kwargs)
        assert r.status_code not in (401, 403), (method, path, r.text)
    for method, path in (("GET", "/v1/platform/capabilities"), ("GET", "/v1/runtime/profile"), ("GET", "/v1/auth/me")):
        assert_envelope(await client.request(method, path), 401, "missing_auth")
        assert (await client.request(method, path, headers=h["user"])).status_code == 200
    for method, path in (("GET", "/auth/users"), ("POST", "/auth/users/x/activate")):
        assert_envelope(await client.request(method, path, headers=h["user"]), 403, "insufficient_role")
    for path in ("/health", "/system/health", "/v1/system/ping", "/voice/health"):
        assert (await client.get(path)).status_code == 200, path


async def test_process_guard_lives_with_the_app(settings):
    from asgi_lifespan import LifespanManager

    from kiln.app import create_app
    from kiln.providers import http

    application = create_app(settings, migrate=False)
    async with LifespanManager(application):
        assert http._process_guard is not None and await http._process_guard() is True  # offline by default
    assert http._process_guard is None


async def test_embeddings_preflight_embeds_with_the_default_resource(app, client, fake_llm, monkeypatch):
    from tests.apps.genai.modelops_helpers import ready_model

    monkeypatch.setenv("KILN_EMBEDDINGS_URL", fake_llm.url)
    h = await role_headers(app, client)
    sa = h["superadmin"]
    providers = (await client.get("/v1/platform/providers", headers=sa)).json()["providers"]
    emb = next(p for p in providers if p["slug"] == "embeddings-local")
    await ready_model(
        client,
        sa,
        {
            "id": "emb-local",
            "name": "Emb",
            "backend": "local",
            "task_key": "embeddings",
            "provider_model_id": "fake-embed",
        },
        provider_instance_id=emb["id"],
    )
    local = (await deployments_by_slug(client, sa))["local-default"]
    r = await client.post(f"/v1/platform/deployments/{local['id']}/clone", headers=sa, json={"slug": "emb"})
    dep = r.json()["deployment_profile"]
    r = await client.put(
        f"/v1/platform/deployments/{dep['id']}/bindings/embeddings",
        headers=sa,
        json={
            "provider_id": emb["id"],
            "resources": [{"managed_model_id": "emb-local"}],
            "default_resource_id": "emb-local",
        },
    )
    assert r.status_code == 200, r.text
    fake_llm.calls.clear()
    r = await client.post(f"/v1/platform/deployments/{dep['id']}/activate", headers=sa)
    assert r.status_code == 200, r.text
    assert [c["json"]["input"] for c in fake_llm.calls if c["path"].endswith("/embeddings")] == [["healthcheck"]]
    fake_llm.models = ["fake-chat"]  # the server stops serving the bound model
    body = assert_envelope(
        await client.post(f"/v1/platform/deployments/{dep['id']}/activate", headers=sa),
        409,
        "deployment_profile_validation_failed",
    )
    assert body["details"]["failures"][0]["code"] == "resource_not_exposed"


async def test_system_health_reports_services_and_capabilities(app, client, fake_llm, monkeypatch):
    monkeypatch.setenv("KILN_QDRANT_URL", closed_port_url().removesuffix("/v1"))
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    body = (await client.get("/system/health")).json()
    rows = {s["container"]: s["reachable"] for s in body["services"]}
    assert rows["backend"] is True and rows["llm"] is True and rows["qdrant"] is False
    assert body["status"] == "degraded"
    caps = {c["capability"] for c in body["platform"]["capabilities"]}
    assert {"llm_inference", "embeddings", "vector_store"} <= caps
    assert (await client.get("/v1/system/ping")).json() == {"status": "ok", "service": "backend", "api": "v1"}
    r = await client.post("/voice/wake-events", json={"wake_word": "kiln", "confidence": 0.9, "event_id": "e1"})
    assert r.status_code == 200 and r.json()["accepted"] is True
    r = await client.post("/voice/wake-events", json={"wake_word": "kiln", "confidence": 0.9, "event_id": "e1"})
    assert r.status_code == 202 and r.json()["reason"] == "duplicate_event_id"
    r = await client.post("/voice/wake-events", json={"wake_word": "kiln", "confidence": 0.9})
    assert r.json()["reason"] == "cooldown_active"
    assert (await client.post("/voice/wake-events", json={"confidence": "x"})).status_code == 400
    assert (await client.post("/voice/wake-events", json={"confidence": 0.1})).json()["reason"] == "below_threshold"


@pytest.fixture
def forced_online(monkeypatch):
    monkeypatch.setenv("KILN_RUNTIME_PROFILE_FORCE", "online")


async def test_forced_profile_is_locked(forced_online, app, client):
    h = await role_headers(app, client)
    r = await client.get("/v1/runtime/profile", headers=h["user"])
    assert r.json() == {"profile": "online", "locked": True, "source": "forced"}
    assert_envelope(
        await client.put("/v1/runtime/profile", json={"profile": "offline"}, headers=h["superadmin"]),
        409,
        "runtime_profile_locked",
    )
    assert_envelope(
        await client.put("/v1/runtime/profile", json={"profile": "sideways"}, headers=h["superadmin"]),
        400,
        "invalid_profile",
    )
