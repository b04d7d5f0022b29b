"""ModelOps credentials: encrypted at rest with a key separate from the JWT secret, never listed,
owner-scoped (another user's credential is 404), usable as a provider secret ref, revocable."""

from __future__ import annotations

from sqlalchemy import select

from kiln.apps.genai.modelops.models import GenaiCredential
from tests.apps.genai.helpers import assert_envelope, login, make_user, role_headers

KEY = "sk-cred-secret-98765"


async def test_credentials_lifecycle(app, client, fake_llm):
    h = await role_headers(app, client)
    r = await client.post(
        "/v1/modelops/credentials",
        headers=h["superadmin"],
        json={
            "provider": "openai",
            "display_name": "Team key",
            "api_key": KEY,
            "credential_scope": "platform",
            "api_base_url": fake_llm.url,
        },
    )
    assert r.status_code == 201, r.text
    cred = r.json()["credential"]
    assert cred["api_key_last4"] == "8765" and KEY not in r.text
    async with app.state.kernel.db.session() as session:
        stored = (await session.execute(select(GenaiCredential))).scalar_one()
        assert KEY not in stored.api_key_encrypted
    assert (
        app.state.kernel.settings.home / "credentials.key"
    ).read_text() != app.state.kernel.settings.resolved_secret_key
    listed = await client.get("/v1/modelops/credentials", headers=h["superadmin"])
    assert [c["id"] for c in listed.json()["credentials"]] == [cred["id"]] and KEY not in listed.text
    # Others do not see it, and get 404 (not 403) on it.
    assert (await client.get("/v1/modelops/credentials", headers=h["user"])).json()["credentials"] == []
    assert_envelope(
        await client.post(f"/v1/modelops/credentials/{cred['id']}/revoke", headers=h["user"]),
        404,
        "credential_not_found",
    )
    assert_envelope(
        await client.post(
            "/v1/modelops/credentials", headers=h["user"], json={"api_key": "x-1", "credential_scope": "platform"}
        ),
        403,
        "insufficient_role",
    )

    # Cloud discovery through the credential: offline refused, online lists the provider's models.
    assert_envelope(
        await client.get(f"/v1/modelops/discovery/cloud?credential_id={cred['id']}", headers=h["superadmin"]),
        403,
        "runtime_profile_blocks_internet",
    )
    await client.put("/v1/runtime/profile", json={"profile": "online"}, headers=h["superadmin"])
    found = (
        await client.get(f"/v1/modelops/discovery/cloud?credential_id={cred['id']}", headers=h["superadmin"])
    ).json()["models"]
    assert {m["provider_model_id"]: m["task_key"] for m in found} == {"fake-chat": "llm", "fake-embed": "embeddings"}
    assert_envelope(
        await client.get(f"/v1/modelops/discovery/cloud?credential_id={cred['id']}", headers=h["user"]),
        404,
        "credential_not_found",
    )
    # Used through a provider's secret ref: the decrypted key reaches the provider, nowhere else.
    r = await client.post(
        "/v1/platform/providers",
        headers=h["superadmin"],
        json={
            "provider_key": "openai_compatible_cloud_llm",
            "slug": "cloud",
            "display_name": "Cloud",
            "endpoint_url": fake_llm.url,
            "secret_refs": {"api_key": f"modelops://credential/{cred['id']}"},
        },
    )
    provider = r.json()["provider"]
    r = await client.post(f"/v1/platform/providers/{provider['id']}/validate", headers=h["superadmin"])
    assert r.json()["validation"]["health"]["reachable"] is True
    assert fake_llm.calls[-1]["headers"].get("Authorization") == f"Bearer {KEY}"
    r = await client.post(f"/v1/modelops/credentials/{cred['id']}/revoke", headers=h["superadmin"])
    assert r.json()["credential"]["is_active"] is False and r.json()["credential"]["revoked_at"]
    assert_envelope(
        await client.post(f"/v1/platform/providers/{provider['id']}/validate", headers=h["superadmin"]),
        409,
        "credential_unavailable",
    )


async def test_personal_credentials_are_owner_scoped(app, client):
    await make_user(app, "a@example.com")
    await make_user(app, "b@example.com")
    ha, hb = await login(client, "a@example.com"), await login(client, "b@example.com")
    r = await client.post("/v1/modelops/credentials", headers=ha, json={"provider": "openai", "api_key": KEY})
    cred = r.json()["credential"]
    assert cred["credential_scope"] == "personal"
    assert_envelope(await client.delete(f"/v1/modelops/credentials/{cred['id']}", headers=hb), 404)
    assert (await client.delete(f"/v1/modelops/credentials/{cred['id']}", headers=ha)).status_code == 200
    assert (await client.get("/v1/modelops/credentials", headers=ha)).json()["credentials"] == []
    assert_envelope(await client.get("/v1/modelops/credentials"), 401, "missing_auth")
