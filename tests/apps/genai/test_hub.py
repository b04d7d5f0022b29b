"""Hugging Face discovery and downloads against the loopback Hub: offline refusal, search, details,
download as an engine job with progress into KILN_HOME/models, cancel mid-download, unsafe names."""

from __future__ import annotations

import asyncio

import pytest

from tests.apps.genai.helpers import assert_envelope, role_headers

WEIGHTS = b"\x00\x01" * 50_000


@pytest.fixture
def hub_env(monkeypatch, fake_hub):
    monkeypatch.setenv("KILN_HF_ENDPOINT", fake_hub.endpoint)
    fake_hub.add_model(
        "acme/tiny-llm",
        {"config.json": b'{"model_type": "llama"}', "model.safetensors": WEIGHTS, "README.md": b"# tiny"},
        downloads=50,
        tags=("llama",),
        pipeline_tag="text-generation",
    )
    fake_hub.add_model("acme/embedder", {"config.json": b"{}"}, downloads=10, pipeline_tag="feature-extraction")
    return fake_hub


async def wait_job(client, headers, job_id: str, statuses=("succeeded", "failed", "cancelled")) -> dict:
    for _ in range(200):
        job = (await client.get(f"/v1/modelops/downloads/{job_id}", headers=headers)).json()["job"]
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"download stuck: {job}")


async def test_discovery_and_download(hub_env, app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    assert_envelope(
        await client.get("/v1/modelops/discovery/huggingface?query=acme", headers=sa),
        403,
        "runtime_profile_blocks_internet",
    )
    assert hub_env.requests == []
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)
    models = (await client.get("/v1/modelops/discovery/huggingface?query=acme", headers=sa)).json()["models"]
    assert [m["source_id"] for m in models] == ["acme/tiny-llm", "acme/embedder"]
    models = (await client.get("/v1/modelops/discovery/huggingface?task_key=embeddings", headers=sa)).json()["models"]
    assert [m["source_id"] for m in models] == ["acme/embedder"]
    one = (await client.get("/v1/modelops/discovery/huggingface/acme/tiny-llm", headers=sa)).json()["model"]
    assert one["pipeline_tag"] == "text-generation"
    assert {f["path"]: f["size"] for f in one["files"]}["model.safetensors"] == len(WEIGHTS)
    assert_envelope(
        await client.get("/v1/modelops/discovery/huggingface/acme/none", headers=sa), 404, "model_source_not_found"
    )
    assert_envelope(
        await client.get("/v1/modelops/discovery/huggingface?query=x", headers=h["admin"]), 403, "insufficient_role"
    )

    r = await client.post(
        "/v1/modelops/downloads",
        headers=sa,
        json={"source_id": "acme/tiny-llm", "ignore_patterns": ["*.md"], "model_id": "tiny-llm", "task_key": "llm"},
    )
    assert r.status_code == 202, r.text
    job = await wait_job(client, sa, r.json()["job"]["job_id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0, job
    target = app.state.kernel.settings.home / "models" / "acme--tiny-llm"
    assert job["target_dir"] == str(target)
    assert (target / "model.safetensors").read_bytes() == WEIGHTS and not (target / "README.md").exists()
    model = (await client.get("/v1/modelops/models/tiny-llm", headers=sa)).json()["model"]
    assert model["lifecycle_state"] == "registered" and model["local_path"] == str(target)
    listed = (await client.get("/v1/modelops/downloads", headers=sa)).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job["job_id"]]
    artifacts = (await client.get("/v1/modelops/local-artifacts", headers=sa)).json()["artifacts"]
    assert [(a["source_id"], a["linked_model_id"], a["ready_for_registration"]) for a in artifacts] == [
        ("acme/tiny-llm", "tiny-llm", False)
    ]
    catalog = (await client.get("/v1/modelops/catalog", headers=sa)).json()["models"]
    assert [c["id"] for c in catalog] == ["tiny-llm"]
    assert_envelope(
        await client.post("/v1/modelops/downloads", headers=sa, json={"source_id": "../etc/passwd"}),
        400,
        "invalid_source_id",
    )


async def test_cancel_mid_download(hub_env, app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)
    hub_env.slow_bytes = 20_000  # 5 s for the weights
    r = await client.post("/v1/modelops/downloads", headers=sa, json={"source_id": "acme/tiny-llm"})
    job_id = r.json()["job"]["job_id"]
    assert_envelope(
        await client.post("/v1/modelops/downloads", headers=sa, json={"source_id": "acme/tiny-llm"}),
        409,
        "download_in_progress",
    )
    await wait_job(client, sa, job_id, statuses=("running",))
    for _ in range(100):
        job = (await client.get(f"/v1/modelops/downloads/{job_id}", headers=sa)).json()["job"]
        if job["progress"] and job["progress"] > 0:
            break
        await asyncio.sleep(0.05)
    await client.post(f"/v1/modelops/downloads/{job_id}/cancel", headers=sa)
    job = await wait_job(client, sa, job_id)
    assert job["status"] == "cancelled"
    models = app.state.kernel.settings.home / "models"
    assert not any(models.iterdir()) if models.exists() else True  # staging removed, no half files


async def test_unsafe_file_names_are_refused(hub_env, app, client):
    h = await role_headers(app, client)
    sa = h["superadmin"]
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)
    hub_env.add_model("evil/repo", {"../../escape.txt": b"x", "ok.txt": b"y"})
    r = await client.post("/v1/modelops/downloads", headers=sa, json={"source_id": "evil/repo"})
    job = await wait_job(client, sa, r.json()["job"]["job_id"])
    assert job["status"] == "failed" and "unsafe file name" in job["error_message"]
    model = (await client.get("/v1/modelops/models/evil--repo", headers=sa)).json()["model"]
    assert model["status"] == "failed" and model["lifecycle_state"] == "created"
    home = app.state.kernel.settings.home
    assert not (home.parent / "escape.txt").exists() and not (home / "escape.txt").exists()


async def test_cdn_redirect_gets_no_token(hub_env, app, client, monkeypatch):
    monkeypatch.setenv("KILN_HF_TOKEN", "hf_secret_token")
    hub_env.cdn_redirect = True
    h = await role_headers(app, client)
    sa = h["superadmin"]
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=sa)
    r = await client.post(
        "/v1/modelops/downloads", headers=sa, json={"source_id": "acme/tiny-llm", "allow_patterns": ["*.safetensors"]}
    )
    job = await wait_job(client, sa, r.json()["job"]["job_id"])
    assert job["status"] == "succeeded", job
    assert hub_env.cdn_auth == [None]
    target = app.state.kernel.settings.home / "models" / "acme--tiny-llm"
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
