"""ModelOps helpers: take a model through register → test → validate → activate and bind it."""

from __future__ import annotations


async def ready_model(client, headers, body: dict, *, provider_instance_id: str | None = None) -> dict:
    r = await client.post("/v1/modelops/models", json=body, headers=headers)
    assert r.status_code == 201, r.text
    test_body: dict = {"inputs": {"prompt": "ping"} if body["task_key"] == "llm" else {"text": "ping"}}
    if provider_instance_id:
        test_body["provider_instance_id"] = provider_instance_id
    r = await client.post(f"/v1/modelops/models/{body['id']}/test", json=test_body, headers=headers)
    assert r.status_code == 200 and r.json()["result"]["success"] is True, r.text
    run_id = r.json()["test_run"]["id"]
    r = await client.post(f"/v1/modelops/models/{body['id']}/validate", json={"test_run_id": run_id}, headers=headers)
    assert r.status_code == 200 and r.json()["model"]["lifecycle_state"] == "validated", r.text
    r = await client.post(f"/v1/modelops/models/{body['id']}/activate", headers=headers)
    assert r.status_code == 200 and r.json()["model"]["lifecycle_state"] == "active", r.text
    return r.json()["model"]


async def active_deployment(client, headers) -> dict:
    deps = (await client.get("/v1/platform/deployments", headers=headers)).json()["deployments"]
    return next(d for d in deps if d["is_active"])


async def bind_llm(client, headers, deployment_id: str, provider_id: str, model_ids: list[str]) -> dict:
    r = await client.put(
        f"/v1/platform/deployments/{deployment_id}/bindings/llm_inference",
        headers=headers,
        json={
            "provider_id": provider_id,
            "resources": [{"managed_model_id": m} for m in model_ids],
            "default_resource_id": model_ids[0] if model_ids else None,
        },
    )
    assert r.status_code == 200, r.text
    return r.json()["deployment_profile"]
