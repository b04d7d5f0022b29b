"""Auth dependencies through a real FastAPI app (SQLite and PostgreSQL), and the login limiter."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from kiln.core.auth import (
    CurrentAuth,
    CurrentUser,
    LoginLimiter,
    LoginRateLimiter,
    OpenSurfaceGuard,
    OptionalUser,
    User,
    authenticate,
    clear_auth_cookie,
    client_address,
    create_api_token,
    create_user,
    current_user_dependency,
    get_user,
    issue_access_token,
    issue_token_for,
    open_surface_guard,
    require_role,
    revoke_api_token,
    revoke_presented_token,
    set_active,
    set_auth_cookie,
    set_role,
)
from kiln.core.db import Base, Database
from kiln.settings import Settings

SECRET = "deps-secret-" + "z" * 40
PASSWORD = "s3cret password"


def make_app(kernel: SimpleNamespace) -> FastAPI:
    app = FastAPI()
    app.state.kernel = kernel

    @app.post("/login")
    async def login(body: dict, request: Request, response: Response, limiter: LoginLimiter):
        key = (body["email"], client_address(request))
        decision = limiter.check(*key)
        if not decision.allowed:
            response.status_code = 429
            response.headers["Retry-After"] = decision.retry_after_header
            return {"detail": "Too many failed logins; try again later"}
        async with kernel.db.session() as s:
            user = await authenticate(s, body["email"], body["password"])
            await s.commit()
        if user is None:
            limiter.record_failure(*key)
            response.status_code = 401
            return {"detail": "Invalid email or password"}
        limiter.record_success(*key)
        issued = issue_token_for(kernel.settings, user)
        set_auth_cookie(response, issued.token, kernel.settings)
        return {"access_token": issued.token}

    @app.post("/logout")
    async def logout(request: Request, response: Response):
        revoked = await revoke_presented_token(request)
        clear_auth_cookie(response, kernel.settings)
        return {"revoked": revoked}

    @app.get("/me")
    async def me(user: CurrentUser, auth: CurrentAuth):
        return {"email": user.email, "method": auth.method, "jti": auth.jti}

    @app.get("/maybe")
    async def maybe(user: OptionalUser):
        return {"email": user.email if user else None}

    @app.get("/admin")
    async def admin(user: User = Depends(require_role("admin"))):
        return {"email": user.email}

    @app.get("/super", dependencies=[Depends(require_role("superadmin"))])
    async def superadmin():
        return {"ok": True}

    @app.get("/custom-cookie")
    async def custom(user: User = Depends(current_user_dependency("session_token"))):
        return {"email": user.email}

    open_router = APIRouter(dependencies=[OpenSurfaceGuard])

    @open_router.get("/open")
    async def open_route():
        return {"ok": True}

    @open_router.websocket("/open/ws")
    async def open_ws(websocket: WebSocket):
        await websocket.accept()
        await websocket.send_json({"hello": True})
        await websocket.close()

    app.include_router(open_router)
    return app


@pytest.fixture
async def kernel(db_url, tmp_path) -> AsyncIterator[SimpleNamespace]:
    """Just what the auth dependencies read from the real Kernel, on a migrated empty database."""
    db = Database(db_url)
    settings = Settings(home=tmp_path, database_url=db_url, secret_key=SECRET, require_token=False)
    yield SimpleNamespace(settings=settings, db=db)
    await db.dispose()


@pytest.fixture
async def client(kernel) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(kernel))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def add_user(kernel, email: str, role: str = "user") -> User:
    async with kernel.db.session() as s:
        user = await create_user(s, email, PASSWORD, role=role)
        await s.commit()
        return user


async def token_for(kernel, email: str, role: str = "user") -> tuple[User, str]:
    user = await add_user(kernel, email, role)
    return user, issue_token_for(kernel.settings, user).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_missing_and_malformed_credentials(client):
    r = await client.get("/me")
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    r = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and r.json()["detail"] == "Authorization header must be 'Bearer <token>'"
    r = await client.get("/me", headers={"Authorization": "Bearer "})
    assert r.status_code == 401


async def test_login_sets_cookie_and_both_transports_work(client, kernel):
    await add_user(kernel, "ann@example.com")
    r = await client.post("/login", json={"email": "ANN@example.com", "password": PASSWORD})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("access_token=") and "HttpOnly" in cookie and "Max-Age=3600" in cookie
    assert "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    token = r.json()["access_token"]
    r = await client.get("/me")  # the client kept the cookie
    assert r.status_code == 200 and r.json()["email"] == "ann@example.com" and r.json()["method"] == "jwt"
    client.cookies.clear()
    r = await client.get("/me", headers=bearer(token))
    assert r.status_code == 200 and r.json()["email"] == "ann@example.com"
    client.cookies.set("session_token", token)
    assert (await client.get("/custom-cookie")).status_code == 200
    client.cookies.clear()
    client.cookies.set("access_token", token)
    assert (await client.get("/custom-cookie")).status_code == 401


async def test_cookie_flags_follow_settings():
    response = Response()
    settings = Settings(secret_key=SECRET, cookie_minutes=15, cookie_secure=True, cookie_samesite="strict")
    set_auth_cookie(response, "tok", settings)
    cookie = response.headers["set-cookie"]
    assert "Max-Age=900" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    response = Response()
    set_auth_cookie(response, "tok", Settings(secret_key=SECRET, cookie_samesite="none"))
    assert "Secure" in response.headers["set-cookie"]  # browsers drop SameSite=None without Secure
    response = Response()
    clear_auth_cookie(response, settings)
    cleared = response.headers["set-cookie"]
    assert cleared.startswith('access_token=""') and "Max-Age=0" in cleared and "Secure" in cleared


async def test_expired_tampered_and_foreign_tokens(client, kernel):
    user = await add_user(kernel, "bo@example.com")
    old = issue_access_token(SECRET, user.id, "user", 30, now=datetime.now(UTC) - timedelta(hours=1))
    r = await client.get("/me", headers=bearer(old.token))
    assert r.status_code == 401 and "expired" in r.json()["detail"].lower()
    foreign = issue_access_token("other-secret-" + "q" * 40, user.id, "user", 30)
    r = await client.get("/me", headers=bearer(foreign.token))
    assert r.status_code == 401 and "invalid" in r.json()["detail"].lower()
    # An invalid token is an error even where auth is optional: the client should log in again.
    r = await client.get("/maybe", headers=bearer(foreign.token))
    assert r.status_code == 401
    assert (await client.get("/maybe")).json() == {"email": None}
    good = issue_token_for(kernel.settings, user).token
    assert (await client.get("/maybe", headers=bearer(good))).json() == {"email": "bo@example.com"}


async def test_logout_revokes_only_that_token(client, kernel):
    user, first = await token_for(kernel, "cy@example.com")
    second = issue_token_for(kernel.settings, user).token
    r = await client.post("/logout", headers=bearer(first))
    assert r.json() == {"revoked": True} and "Max-Age=0" in r.headers["set-cookie"]
    r = await client.get("/me", headers=bearer(first))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert (await client.get("/me", headers=bearer(second))).status_code == 200
    # Logging out twice, or with junk, still answers and revokes nothing new.
    assert (await client.post("/logout", headers=bearer(first))).json() == {"revoked": True}
    assert (await client.post("/logout", headers=bearer("junk"))).json() == {"revoked": False}
    assert (await client.post("/logout")).json() == {"revoked": False}


async def test_inactive_and_deleted_users_are_refused(client, kernel):
    user, token = await token_for(kernel, "di@example.com")
    async with kernel.db.session() as s:
        await set_active(s, await get_user(s, user.id), False)
        await s.commit()
    r = await client.get("/me", headers=bearer(token))
    assert r.status_code == 401 and "inactive" in r.json()["detail"]
    gone, gone_token = await token_for(kernel, "ed@example.com")
    async with kernel.db.session() as s:
        await s.delete(await get_user(s, gone.id))
        await s.commit()
    r = await client.get("/me", headers=bearer(gone_token))
    assert r.status_code == 401 and "not found" in r.json()["detail"]


async def test_roles_come_from_the_database(client, kernel):
    user, token = await token_for(kernel, "fi@example.com")
    r = await client.get("/admin", headers=bearer(token))
    assert r.status_code == 403 and r.json()["detail"] == "Requires role admin or higher; your role is user"
    async with kernel.db.session() as s:
        await set_role(s, await get_user(s, user.id), "admin")
        await s.commit()
    # Same token, whose role claim still says "user": the promotion applies at once.
    assert (await client.get("/admin", headers=bearer(token))).status_code == 200
    assert (await client.get("/super", headers=bearer(token))).status_code == 403
    _, root = await token_for(kernel, "root@example.com", role="superadmin")
    assert (await client.get("/super", headers=bearer(root))).status_code == 200
    assert (await client.get("/admin", headers=bearer(root))).status_code == 200
    with pytest.raises(ValueError):
        require_role("owner")


async def test_api_tokens_as_bearer(client, kernel):
    user = await add_user(kernel, "gi@example.com")
    async with kernel.db.session() as s:
        token, plaintext = await create_api_token(s, user, "ci")
        await s.commit()
    r = await client.get("/me", headers=bearer(plaintext))
    assert r.status_code == 200
    assert r.json() == {"email": "gi@example.com", "method": "api_token", "jti": None}
    async with kernel.db.session() as s:
        await revoke_api_token(s, user, token.id)
        await s.commit()
    r = await client.get("/me", headers=bearer(plaintext))
    assert r.status_code == 401 and "API token" in r.json()["detail"]


async def test_open_surface_guard(kernel, client):
    assert (await client.get("/open")).status_code == 200  # loopback default: open
    kernel.settings.require_token = True
    r = await client.get("/open")
    assert r.status_code == 401 and "Not authenticated" in r.json()["detail"]
    user, token = await token_for(kernel, "hu@example.com")
    r = await client.get("/open", headers=bearer(token))  # a plain user's login is not enough
    assert r.status_code == 403 and "API token" in r.json()["detail"] and "admin" in r.json()["detail"]
    assert (await client.get("/open", headers=bearer(token + "x"))).status_code == 401
    _, admin = await token_for(kernel, "ad@example.com", role="admin")
    assert (await client.get("/open", headers=bearer(admin))).status_code == 200
    async with kernel.db.session() as s:
        _, api_token = await create_api_token(s, user, "ci")
        await s.commit()
    assert (await client.get("/open", headers=bearer(api_token))).status_code == 200


def test_open_surface_guard_follows_listen_address(tmp_path):
    assert Settings(home=tmp_path, host="0.0.0.0").token_required_on_open_surfaces
    assert not Settings(home=tmp_path, host="127.0.0.1").token_required_on_open_surfaces
    assert open_surface_guard is OpenSurfaceGuard.dependency


def test_open_websocket_needs_a_token_off_loopback(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'ws.db'}"
    settings = Settings(home=tmp_path, database_url=url, secret_key=SECRET, require_token=True)
    kernel = SimpleNamespace(settings=settings, db=None)

    async def setup() -> str:
        # The database lives on the TestClient's loop, so it is created inside the app's loop too.
        kernel.db = Database(url)
        async with kernel.db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        return (await token_for(kernel, "ws@example.com", role="admin"))[1]

    with TestClient(make_app(kernel)) as tc:
        token = tc.portal.call(setup)
        with pytest.raises(WebSocketDisconnect) as info, tc.websocket_connect("/open/ws"):
            pass
        assert info.value.code == 1008
        with tc.websocket_connect(f"/open/ws?token={token}") as ws:
            assert ws.receive_json() == {"hello": True}
        tc.portal.call(kernel.db.dispose)


async def test_login_rate_limit(client, kernel):
    await add_user(kernel, "ja@example.com")
    for _ in range(5):
        r = await client.post("/login", json={"email": "ja@example.com", "password": "wrong pass 1"})
        assert r.status_code == 401
    r = await client.post("/login", json={"email": "ja@example.com", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 800
    await add_user(kernel, "ko@example.com")
    r = await client.post("/login", json={"email": "ko@example.com", "password": PASSWORD})
    assert r.status_code == 200  # other accounts from the same address are unaffected


async def test_tokens_never_reach_logs_or_stdout(client, kernel, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    await add_user(kernel, "lu@example.com")
    r = await client.post("/login", json={"email": "lu@example.com", "password": PASSWORD})
    token = r.json()["access_token"]
    await client.get("/me", headers=bearer(token))
    await client.post("/logout", headers=bearer(token))
    await client.get("/me", headers=bearer(token))
    out, err = capsys.readouterr()
    assert token not in out and token not in err and token not in caplog.text
    assert PASSWORD not in out + err + caplog.text


# --- login rate limiter -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_blocks_after_five_failures_and_slides():
    clock = Clock()
    limiter = LoginRateLimiter(max_failures=5, window_seconds=900, clock=clock)
    for _ in range(4):
        assert limiter.check("a@x.io", "1.2.3.4").allowed
        limiter.record_failure("a@x.io", "1.2.3.4")
        clock.now += 10
    assert limiter.check("a@x.io", "1.2.3.4").allowed
    limiter.record_failure("A@X.io ", "1.2.3.4")  # same account, differently typed
    decision = limiter.check("a@x.io", "1.2.3.4")
    assert not decision.allowed
    # The first failure was at t=1000; it leaves the window at t=1900. Now is t=1040.
    assert decision.retry_after == pytest.approx(860)
    assert decision.retry_after_header == "860"
    assert limiter.check("a@x.io", "5.6.7.8").allowed  # another address is not punished
    assert limiter.check("b@x.io", "1.2.3.4").allowed  # nor another account
    clock.now = 1900.0
    assert limiter.check("a@x.io", "1.2.3.4").allowed  # oldest failure slid out
    limiter.record_failure("a@x.io", "1.2.3.4")
    assert not limiter.check("a@x.io", "1.2.3.4").allowed


def test_limiter_success_clears_the_pair():
    clock = Clock()
    limiter = LoginRateLimiter(max_failures=2, window_seconds=60, clock=clock)
    limiter.record_failure("a", "ip")
    limiter.record_success("a", "ip")
    limiter.record_failure("a", "ip")
    assert limiter.check("a", "ip").allowed
    limiter.record_failure("a", "ip")
    assert not limiter.check("a", "ip").allowed


def test_limiter_per_client_limit_across_accounts_and_bounded_memory():
    clock = Clock()
    limiter = LoginRateLimiter(max_failures=5, max_failures_per_client=3, window_seconds=60, clock=clock, max_keys=10)
    for i in range(3):
        limiter.record_failure(f"user{i}", "ip")
        clock.now += 0.25
    decision = limiter.check("fresh-account", "ip")  # the address backs off (1 s after its last failure)
    assert not decision.allowed and decision.retry_after == pytest.approx(0.75)
    assert limiter.check("fresh-account", "other-ip").allowed
    for i in range(50):
        limiter.record_failure(f"spray{i}", f"ip{i}")
    assert len(limiter._pairs) <= 10 and len(limiter._clients) <= 10
    clock.now += 120
    limiter.prune()
    assert not limiter._pairs and not limiter._clients and not limiter._pending_pairs


def test_limiter_rejects_nonsense_configuration():
    with pytest.raises(ValueError):
        LoginRateLimiter(max_failures=0)
    with pytest.raises(ValueError):
        LoginRateLimiter(backoff_base_seconds=5, backoff_max_seconds=1)
