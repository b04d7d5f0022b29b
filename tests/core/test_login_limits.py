"""Login rate limits: atomic counting, an address backs off without locking others out, the client
address from X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.requests import Request

from kiln.app import create_app
from kiln.core.auth import LoginRateLimiter, client_address
from tests.conftest import make_settings
from tests.core.test_auth_deps import Clock

PASSWORD = "Correct-horse-9"


def test_parallel_attempts_are_counted_before_they_finish():
    limiter = LoginRateLimiter(max_failures=5, max_failures_per_client=20)
    allowed = [limiter.check("a@x.io", "ip").allowed for _ in range(100)]
    assert allowed.count(True) == 5  # the rest are refused while those five are still being checked
    refused = limiter.check("a@x.io", "ip")
    assert not refused.allowed and refused.retry_after_header == "1"
    for _ in range(5):
        limiter.record_failure("a@x.io", "ip")
    assert not limiter.check("a@x.io", "ip").allowed
    # Many accounts from one address: only the per-address limit may be in flight at once.
    spray = [limiter.check(f"u{n}@x.io", "ip2").allowed for n in range(100)]
    assert spray.count(True) == 20
    limiter.release("u0@x.io", "ip2")  # an attempt that ended without an outcome frees its place
    assert limiter.check("late@x.io", "ip2").allowed


def test_unsettled_reservations_lapse():
    clock = Clock()
    limiter = LoginRateLimiter(max_failures=2, pending_seconds=30, clock=clock)
    assert limiter.check("a", "ip").allowed and limiter.check("a", "ip").allowed
    assert not limiter.check("a", "ip").allowed
    clock.now += 31
    assert limiter.check("a", "ip").allowed


def test_a_flooding_address_backs_off_without_locking_other_accounts_out():
    clock = Clock()
    limiter = LoginRateLimiter(
        max_failures=5,
        max_failures_per_client=50,
        window_seconds=900,
        backoff_base_seconds=1,
        backoff_max_seconds=60,
        clock=clock,
    )
    assert limiter.check("regular@x.io", "nat").allowed
    limiter.record_success("regular@x.io", "nat")  # has logged in from this address before
    for n in range(50):
        assert limiter.check(f"victim{n}@x.io", "nat").allowed
        limiter.record_failure(f"victim{n}@x.io", "nat")
        clock.now += 0.01
    # Another account at that address waits seconds, not the 15-minute window.
    first = limiter.check("colleague@x.io", "nat")
    assert not first.allowed and first.retry_after <= 1
    clock.now += 1
    assert limiter.check("colleague@x.io", "nat").allowed
    limiter.record_failure("colleague@x.io", "nat")  # 51st failure: the back-off doubles
    waits = []
    for _ in range(8):
        decision = limiter.check("attacker-next@x.io", "nat")
        waits.append(decision.retry_after)
        clock.now += decision.retry_after
        assert limiter.check("attacker-next@x.io", "nat").allowed
        limiter.record_failure("attacker-next@x.io", "nat")
        limiter._pairs.clear()  # isolate the address back-off from the account lockout
    assert waits == pytest.approx([2, 4, 8, 16, 32, 60, 60, 60])
    # A user who has logged in from this address before is not slowed by the flood at all.
    assert limiter.check("regular@x.io", "nat").allowed
    limiter.release("regular@x.io", "nat")
    # The per-account lockout is unchanged: five failures lock that account at that address.
    for _ in range(5):
        assert limiter.check("regular@x.io", "nat").allowed
        limiter.record_failure("regular@x.io", "nat")
    locked = limiter.check("regular@x.io", "nat")
    assert not locked.allowed and locked.retry_after > 800


def _request(peer: str, forwarded: str | None, proxies: list[str]) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    app = SimpleNamespace(
        state=SimpleNamespace(kernel=SimpleNamespace(settings=SimpleNamespace(trusted_proxies=proxies)))
    )
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": headers,
            "client": (peer, 5555),
            "app": app,
            "query_string": b"",
        }
    )


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", [], "127.0.0.1"),  # no trusted proxies: the header is never read
        ("198.51.100.2", "203.0.113.7", ["127.0.0.1"], "198.51.100.2"),  # the peer is not a trusted proxy
        ("127.0.0.1", "203.0.113.7", ["127.0.0.1"], "203.0.113.7"),
        (
            "10.0.0.9",
            "6.6.6.6, 203.0.113.7, 10.0.0.2",
            ["10.0.0.0/8"],
            "203.0.113.7",
        ),  # left part is the client's claim
        ("10.0.0.9", "10.0.0.3", ["10.0.0.0/8"], "10.0.0.9"),  # only proxies in the chain
        ("::1", "[2001:db8::5]:4711", ["::1"], "2001:db8::5"),
        ("127.0.0.1", "not-an-address", ["127.0.0.1"], "127.0.0.1"),
    ],
)
def test_client_address(peer: str, forwarded: str, proxies: list[str], expected: str):
    assert client_address(_request(peer, forwarded, proxies)) == expected


async def _media(tmp_path: Path, db_url: str, **overrides: object):
    app = create_app(make_settings(tmp_path / "home", db_url, apps=["media"], **overrides), migrate=False)
    manager = LifespanManager(app, startup_timeout=30)
    await manager.__aenter__()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    return app, manager, http


async def test_parallel_wrong_passwords_are_evaluated_only_up_to_the_limit(tmp_path: Path, db_url: str):
    app, manager, http = await _media(tmp_path, db_url)
    try:
        body = {"email": "target@example.com", "password": PASSWORD}
        assert (await http.post("/api/auth/signup", json=body)).status_code == 201
        wrong = {"email": "target@example.com", "password": "Wrong-guess-1"}
        codes = await asyncio.gather(*(http.post("/api/auth/login", json=wrong) for _ in range(100)))
        statuses = [r.status_code for r in codes]
        assert statuses.count(401) == 5 and statuses.count(429) == 95
        assert (await http.post("/api/auth/login", json=body)).status_code == 429  # locked
    finally:
        await http.aclose()
        await manager.__aexit__(None, None, None)


@pytest.mark.parametrize("trusted", [False, True])
async def test_forwarded_for_counts_only_behind_a_trusted_proxy(tmp_path: Path, db_url: str, trusted: bool):
    app, manager, http = await _media(tmp_path, db_url, trusted_proxies=["127.0.0.1"] if trusted else [])
    try:
        wrong = {"email": "someone@example.com", "password": "Wrong-guess-1"}
        statuses = [
            (await http.post("/api/auth/login", json=wrong, headers={"X-Forwarded-For": f"203.0.113.{n}"})).status_code
            for n in range(7)
        ]
        # Untrusted: a rotating header does not make new clients. Trusted: each address is its own client.
        assert statuses == ([401] * 7 if trusted else [401] * 5 + [429] * 2)
    finally:
        await http.aclose()
        await manager.__aexit__(None, None, None)
