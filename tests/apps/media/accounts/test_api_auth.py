"""Auth routes, root and health of the media contract, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from asgi_lifespan import LifespanManager

from kiln.app import create_app
from kiln.core.auth import LoginRateLimiter
from tests.apps.media.mediakit import PASSWORD, register, second_client, settings  # noqa: F401  (fixture)


async def test_root_and_health(client):
    assert (await client.get("/")).json() == {"message": "Hyperion API is running"}
    body = (await client.get("/api/health")).json()
    assert body["status"] == "healthy" and body["components"] == {"api": "up", "database": "up"}
    assert body["database_latency_ms"] >= 0 and body["timestamp"] > 1.7e9


async def test_health_is_503_when_the_database_is_down(app, client, monkeypatch):
    def broken():
        raise ConnectionRefusedError("secret connection detail")

    monkeypatch.setattr(app.state.kernel.db, "session", broken)
    response = await client.get("/api/health")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert detail["status"] == "unhealthy" and detail["components"]["database"] == "down"
    assert "secret" not in detail["error"]


async def test_signup_login_me_update_logout(client):
    response = await client.post("/api/auth/signup", json={"email": "Ann@Example.com", "password": PASSWORD})
    assert response.status_code == 201 and response.json() == {"message": "User created successfully"}
    again = await client.post("/api/auth/signup", json={"email": "ann@example.com", "password": PASSWORD})
    assert again.status_code == 400 and again.json() == {"detail": "Email already registered"}

    wrong = await client.post("/api/auth/login", json={"email": "ann@example.com", "password": "nope-nope-1"})
    assert wrong.status_code == 401 and wrong.json() == {"detail": "Invalid email or password"}
    login = await client.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert login.status_code == 200 and login.json()["message"] == "Login successful"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("access_token=") and "HttpOnly" in cookie and "Max-Age=3600" in cookie
    token = client.cookies["access_token"]

    me = (await client.get("/api/auth/me")).json()
    assert me["email"] == "ann@example.com" and me["full_name"] == "Unnamed User" and me["language"] == "en"
    updated = await client.put("/api/auth/me", json={"language": "hu", "full_name": ""})
    assert updated.status_code == 200
    assert updated.json() | {"id": None} == {
        "id": None,
        "email": "ann@example.com",
        "full_name": "Unnamed User",
        "language": "hu",
    }
    assert (await client.put("/api/auth/me", json={"full_name": "Ann B"})).json()["language"] == "hu"

    out = await client.post("/api/auth/logout")
    assert out.json() == {"message": "Logout successful"}
    assert "access_token" not in client.cookies
    # The old token is revoked by its jti, not merely forgotten by this browser.
    replay = await client.get("/api/auth/me", headers={"Cookie": f"access_token={token}"})
    assert replay.status_code == 401 and replay.json() == {"detail": "Token has been revoked"}


async def test_auth_errors_have_the_contract_messages(app, client):
    missing = await client.get("/api/auth/me")
    assert missing.status_code == 401 and missing.json() == {"detail": "Not authenticated"}
    garbage = await client.get("/api/auth/me", headers={"Cookie": "access_token=not.a.jwt"})
    assert garbage.json() == {"detail": "Token expired or invalid"}
    assert (await client.post("/api/auth/logout")).status_code == 200  # logout without a token is fine
    bad = await client.post("/api/auth/signup", json={"email": "no-at-sign", "password": PASSWORD})
    assert bad.status_code == 422
    weak = await client.post("/api/auth/signup", json={"email": "w@example.com", "password": "short"})
    assert weak.status_code == 422 and "at least 8" in weak.json()["detail"]
    async with second_client(app) as other:
        await register(other, "bob@example.com")
        assert (await other.get("/api/auth/me")).json()["email"] == "bob@example.com"


async def test_repeated_failed_logins_are_throttled(client):
    await client.post("/api/auth/signup", json={"email": "c@example.com", "password": PASSWORD})
    codes = [
        (await client.post("/api/auth/login", json={"email": "c@example.com", "password": "Wrong-pass-1"})).status_code
        for _ in range(6)
    ]
    assert codes[:5] == [401] * 5 and codes[5] == 429


async def test_lockout_is_per_account_and_address_and_per_address(app, client):
    await client.post("/api/auth/signup", json={"email": "c@example.com", "password": PASSWORD})

    def at(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 40000)), base_url="http://testserver"
        )

    wrong = {"email": "c@example.com", "password": "Wrong-pass-1"}
    async with at("10.0.0.1") as one, at("10.0.0.2") as two:
        for _ in range(5):
            assert (await one.post("/api/auth/login", json=wrong)).status_code == 401
        locked = await one.post("/api/auth/login", json={"email": "C@example.com", "password": PASSWORD})
        assert locked.status_code == 429  # even the right password: no oracle while locked, any case
        assert locked.json() == {"detail": "Too many failed logins; try again later"}
        assert 1 <= int(locked.headers["Retry-After"]) <= 15 * 60
        # The same account from another address is not locked out by someone else's guessing.
        assert (
            await two.post("/api/auth/login", json={"email": "c@example.com", "password": PASSWORD})
        ).status_code == 200
        # Another account from the locked address is still fine (the pair is locked, not the address).
        await one.post("/api/auth/signup", json={"email": "d@example.com", "password": PASSWORD})
        assert (
            await one.post("/api/auth/login", json={"email": "d@example.com", "password": PASSWORD})
        ).status_code == 200

    # One address spraying many accounts hits the looser per-address window (50 by default; 8 here
    # to keep the test quick: every failed login pays for a full password hash).
    app.state.login_limiter = LoginRateLimiter(max_failures_per_client=8)
    async with at("10.0.0.3") as sprayer:
        codes = [
            (
                await sprayer.post("/api/auth/login", json={"email": f"u{n}@example.com", "password": "Wrong-pass-1"})
            ).status_code
            for n in range(9)
        ]
    assert codes[:8] == [401] * 8 and codes[8] == 429


async def test_password_policy_answers_what_to_fix(client):
    # NIST SP 800-63B: length and a blocklist, no composition rules; the detail names the fix.
    cases = {
        "aaaaaaaaaaaa": "Password must not be one character repeated; use different characters",
        "sunshine": "Password is one of the most commonly used passwords, which attackers try first; choose another",
        "p@example.com": "Password must not be your email address or the part before the @",
        "short": "Password must be at least 8 characters long (this one has 5)",
    }
    for password, expected in cases.items():
        response = await client.post("/api/auth/signup", json={"email": "p@example.com", "password": password})
        assert response.status_code == 422 and response.json() == {"detail": expected}, (password, response.text)
    assert (
        await client.post("/api/auth/signup", json={"email": "p@example.com", "password": PASSWORD})
    ).status_code == 201


async def test_a_letter_only_password_signs_up_and_logs_in(client):
    # The frontend checks only length >= 8; a policy stricter than that locks new users out.
    for email, password in (("letters@example.com", "meadowlarkriver"), ("digits@example.com", "73902815")):
        assert (await client.post("/api/auth/signup", json={"email": email, "password": password})).status_code == 201
        assert (await client.post("/api/auth/login", json={"email": email, "password": password})).status_code == 200


@pytest.mark.parametrize(
    ("secure", "samesite", "flags", "absent"),
    [
        (False, "lax", ["SameSite=lax"], ["Secure"]),  # the default: plain-http local use works
        (True, "strict", ["Secure", "SameSite=strict"], []),
        (False, "none", ["Secure", "SameSite=none"], []),  # None without Secure is dropped by browsers
    ],
)
async def test_cookie_flags_follow_the_settings(settings, secure, samesite, flags, absent):  # noqa: F811
    configured = settings.model_copy(update={"cookie_secure": secure, "cookie_samesite": samesite})
    application = create_app(configured, migrate=False)
    async with (
        LifespanManager(application, startup_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="https://testserver") as c,
    ):
        user = await register(c, "ann@example.com")
        cookie = c.cookies["access_token"]
        login = await c.post("/api/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
        header = login.headers["set-cookie"]
        for flag in ["HttpOnly", "Max-Age=3600", "Path=/", *flags]:
            assert flag.lower() in header.lower(), header
        for flag in absent:
            assert flag.lower() not in header.lower().split("; "), header
        claims = jwt_claims(cookie)
        assert claims["exp"] - claims["iat"] == 30 * 60 and claims["jti"] and user["id"]
        out = await c.post("/api/auth/logout")
        cleared = out.headers["set-cookie"]
        assert "Max-Age=0" in cleared and all(f.lower() in cleared.lower() for f in flags)


def jwt_claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
