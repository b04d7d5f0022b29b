"""The per-request auth path: one statement in the request's own session, verified JWTs remembered
without ever outliving their expiry or a logout, and roles still read from the database each time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from kiln.core.auth import tokens
from kiln.core.auth.tokens import InvalidToken, decode_access_token, issue_access_token
from tests.apps.genai.helpers import assert_envelope, login, make_user

SECRET = "auth-path-secret-" + "q" * 40


class _Statements:
    """SQL statements of the app's engine while `recording` is on, each with the pooled connection
    it ran on. The job runner and the periodic tasks share the engine, so a count of every checkout
    would count theirs too; the connection a statement ran on is the request's own."""

    def __init__(self, app) -> None:
        self.sql: list[str] = []
        self.connections: list[int] = []
        self.recording = False
        engine = app.state.kernel.db.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, conn, _cursor, statement, *_args) -> None:
        if self.recording:
            self.sql.append(" ".join(statement.split()).lower())
            self.connections.append(id(conn.connection.dbapi_connection))

    def connections_of(self, table: str) -> set[int]:
        return {c for s, c in zip(self.sql, self.connections, strict=True) if table in s}


async def test_a_request_authenticates_with_one_statement_in_its_own_session(app, client):
    await make_user(app, "one@example.com")
    headers = await login(client, "one@example.com")
    assert (await client.get("/v1/playgrounds/sessions", headers=headers)).status_code == 200  # warm
    seen = _Statements(app)
    seen.recording = True
    r = await client.get("/v1/playgrounds/sessions", headers=headers)
    seen.recording = False
    assert r.status_code == 200, r.text
    auth = [s for s in seen.sql if "revoked_tokens" in s or "from users" in s]
    assert len(auth) == 1 and "revoked_tokens" in auth[0] and "from users" in auth[0], seen.sql
    # the endpoint's queries ran on the connection auth used: one checkout for the whole request
    auth_connections = seen.connections_of("revoked_tokens")
    assert len(auth_connections) == 1
    assert seen.connections_of("genai_playground_sessions") == auth_connections, seen.sql


async def test_a_logged_out_token_is_refused_although_it_was_verified_before(app, client):
    await make_user(app, "out@example.com")
    headers = await login(client, "out@example.com")
    assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200
    assert (await client.post("/auth/logout", headers=headers)).status_code in (200, 204)
    assert_envelope(await client.get("/v1/auth/me", headers=headers), 401, "invalid_token")


async def test_a_deleted_user_is_refused_although_the_token_was_verified_before(app, client):
    user_id = await make_user(app, "gone@example.com")
    headers = await login(client, "gone@example.com")
    assert (await client.get("/v1/auth/me", headers=headers)).status_code == 200
    async with app.state.kernel.db.session() as session:
        from kiln.core.auth import User

        await session.delete(await session.get(User, user_id))
        await session.commit()
    assert_envelope(await client.get("/v1/auth/me", headers=headers), 401, "invalid_token")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The time the token module sees: `clock[0]`, moved by the test."""
    now = [datetime.now(UTC)]

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return now[0]

    monkeypatch.setattr(tokens, "datetime", Clock)
    return now


def test_a_remembered_token_is_refused_once_it_expires(clock):
    issued = issue_access_token(SECRET, "u-expiry", "user", 5)
    assert decode_access_token(SECRET, issued.token)["sub"] == "u-expiry"
    clock[0] += timedelta(minutes=5, seconds=tokens.LEEWAY_SECONDS - 1)  # within the leeway
    assert decode_access_token(SECRET, issued.token)["sub"] == "u-expiry"
    clock[0] += timedelta(seconds=2)
    with pytest.raises(InvalidToken) as info:
        decode_access_token(SECRET, issued.token)
    assert info.value.reason == "expired"


def test_a_remembered_token_skips_the_signature_check_only_under_its_own_secret(monkeypatch):
    issued = issue_access_token(SECRET, "u-cache", "user", 5)
    first = decode_access_token(SECRET, issued.token)
    first["sub"] = "tampered by the caller"  # a caller changing its copy changes nothing remembered

    def no_verification(*_args, **_kwargs):
        raise AssertionError("the signature was checked again")

    monkeypatch.setattr(tokens.jwt, "decode", no_verification)
    assert decode_access_token(SECRET, issued.token)["sub"] == "u-cache"
    with pytest.raises(AssertionError):  # another secret is another key: verified afresh
        decode_access_token("another-secret-" + "w" * 40, issued.token)


def test_the_remembered_tokens_stay_bounded():
    for i in range(tokens.VERIFIED_CACHE_SIZE + 10):
        decode_access_token(SECRET, issue_access_token(SECRET, f"u{i}", "user", 5).token)
    assert len(tokens._verified) == tokens.VERIFIED_CACHE_SIZE
