"""Identity: register/activation, login (rate-limited), JWT revocation on logout, roles from the DB."""

from __future__ import annotations

import pytest

from tests.apps.genai.helpers import PASSWORD, assert_envelope, login, make_user, role_headers


async def test_self_registration_is_inactive_until_admin_activates(app, client):
    r = await client.post(
        "/auth/register", json={"email": "New@Example.com", "username": "newbie", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert user["email"] == "new@example.com" and user["role"] == "user" and user["is_active"] is False
    assert_envelope(
        await client.post("/auth/login", json={"identifier": "newbie", "password": PASSWORD}), 403, "account_inactive"
    )
    headers = await role_headers(app, client)
    pending = (await client.get("/auth/users?status=pending", headers=headers["admin"])).json()["users"]
    assert [u["email"] for u in pending] == ["new@example.com"]
    r = await client.post(f"/auth/users/{user['id']}/activate", headers=headers["admin"])
    assert r.status_code == 200 and r.json()["user"]["is_active"] is True
    assert (
        await client.post("/auth/login", json={"email": "new@example.com", "password": PASSWORD})
    ).status_code == 200


async def test_register_rules(app, client):
    assert_envelope(
        await client.post(
            "/auth/register", json={"email": "x@example.com", "username": "x", "password": PASSWORD, "role": "admin"}
        ),
        403,
        "role_assignment_forbidden",
    )
    assert_envelope(
        await client.post("/auth/register", json={"email": "bad", "username": "x", "password": PASSWORD}),
        400,
        "invalid_email",
    )
    assert_envelope(
        await client.post("/auth/register", json={"email": "w@example.com", "username": "w", "password": "short"}),
        422,
        "weak_password",
    )
    assert_envelope(await client.post("/auth/register", json={"username": "w"}), 400, "invalid_payload")
    headers = await role_headers(app, client)
    r = await client.post(
        "/auth/register",
        headers=headers["superadmin"],
        json={"email": "a2@example.com", "username": "a2", "password": PASSWORD, "role": "admin"},
    )
    assert r.status_code == 201 and r.json()["user"]["role"] == "admin" and r.json()["user"]["is_active"] is True
    assert_envelope(
        await client.post(
            "/auth/register",
            headers=headers["superadmin"],
            json={"email": "A2@example.com", "username": "a3", "password": PASSWORD},
        ),
        409,
        "duplicate_user",
    )
    assert_envelope(
        await client.post(
            "/auth/register",
            headers=headers["user"],
            json={"email": "u9@example.com", "username": "u9", "password": PASSWORD},
        ),
        403,
        "insufficient_role",
    )


@pytest.fixture
def closed_signup(monkeypatch):
    monkeypatch.setenv("KILN_SIGNUP", "closed")


async def test_signup_closed_refuses_self_registration(closed_signup, app, client):
    assert_envelope(
        await client.post("/auth/register", json={"email": "c@example.com", "username": "c", "password": PASSWORD}),
        403,
        "self_registration_disabled",
    )


async def test_logout_revokes_the_token(app, client):
    await make_user(app, "u@example.com")
    headers = await login(client, "u@example.com")
    me = await client.get("/v1/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["user"]["email"] == "u@example.com"
    assert (await client.post("/auth/logout", headers=headers)).json() == {"logged_out": True}
    assert_envelope(await client.get("/auth/me", headers=headers), 401, "invalid_token")
    assert_envelope(await client.get("/auth/me"), 401, "missing_auth")


async def test_login_errors_and_rate_limit(app, client):
    await make_user(app, "rl@example.com")
    assert_envelope(await client.post("/auth/login", json={"identifier": "rl@example.com"}), 400, "missing_credentials")
    for _ in range(5):
        assert_envelope(
            await client.post("/auth/login", json={"identifier": "rl@example.com", "password": "nope-123"}),
            401,
            "invalid_credentials",
        )
    r = await client.post("/auth/login", json={"identifier": "rl@example.com", "password": PASSWORD})
    assert_envelope(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) >= 1


async def test_roles_come_from_the_database_on_every_request(app, client):
    headers = await role_headers(app, client)
    target = (await client.get("/auth/me", headers=headers["admin"])).json()["user"]
    assert (await client.get("/auth/users", headers=headers["admin"])).status_code == 200
    r = await client.patch(f"/auth/users/{target['id']}/role", json={"role": "user"}, headers=headers["superadmin"])
    assert r.status_code == 200 and r.json()["user"]["role"] == "user"
    # Same token, demoted: access is gone at once.
    assert_envelope(await client.get("/auth/users", headers=headers["admin"]), 403, "insufficient_role")
    r = await client.post(f"/auth/users/{target['id']}/deactivate", headers=headers["superadmin"])
    assert r.status_code == 200
    assert_envelope(await client.get("/auth/me", headers=headers["admin"]), 401, "account_inactive")


async def test_last_superadmin_is_protected(app, client):
    headers = await role_headers(app, client)
    me = (await client.get("/auth/me", headers=headers["superadmin"])).json()["user"]
    assert_envelope(
        await client.patch(f"/auth/users/{me['id']}/role", json={"role": "admin"}, headers=headers["superadmin"]),
        409,
        "last_superadmin_demote_forbidden",
    )
    assert_envelope(
        await client.post(f"/auth/users/{me['id']}/deactivate", headers=headers["superadmin"]),
        409,
        "last_superadmin_deactivate_forbidden",
    )
    assert_envelope(
        await client.patch(f"/auth/users/{me['id']}/role", json={"role": "user"}, headers=headers["admin"]),
        403,
        "insufficient_role",
    )
    assert_envelope(
        await client.patch(f"/auth/users/{me['id']}/role", json={"role": "god"}, headers=headers["superadmin"]),
        400,
        "invalid_role",
    )
    assert_envelope(await client.post("/auth/users/nope/activate", headers=headers["admin"]), 404, "user_not_found")
    # An admin cannot (de)activate elevated accounts.
    assert_envelope(
        await client.post(f"/auth/users/{me['id']}/deactivate", headers=headers["admin"]), 403, "insufficient_role"
    )


@pytest.fixture
def bootstrap_env(monkeypatch):
    monkeypatch.setenv("KILN_BOOTSTRAP_SUPERADMIN_EMAIL", "root@example.com")
    monkeypatch.setenv("KILN_BOOTSTRAP_SUPERADMIN_PASSWORD", "root-password-1")


async def test_bootstrap_superadmin(bootstrap_env, app, client):
    r = await client.post("/auth/login", json={"identifier": "root@example.com", "password": "root-password-1"})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["role"] == "superadmin" and r.json()["token_type"] == "bearer"
    assert r.json()["expires_in"] > 0
