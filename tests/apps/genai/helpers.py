"""Helpers for genai API tests: users of each role made through the core store, logged in via the API."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import event as sa_event

from kiln.core import auth as core_auth

PASSWORD = "correct-horse-9"


async def make_user(app, email: str, role: str = "user", *, active: bool = True, password: str = PASSWORD):
    async with app.state.kernel.db.session() as session:
        user = await core_auth.create_user(
            session, email, password, role=role, username=email.split("@")[0], is_active=active
        )
        await session.commit()
        return user.id


async def login(client: httpx.AsyncClient, identifier: str, password: str = PASSWORD) -> dict[str, str]:
    response = await client.post("/auth/login", json={"identifier": identifier, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def role_headers(app, client: httpx.AsyncClient) -> dict[str, dict[str, str]]:
    """Headers of one active user per role, plus "anonymous" (no header)."""
    out: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ("user", "admin", "superadmin"):
        email = f"{role}@example.com"
        await make_user(app, email, role)
        out[role] = await login(client, email)
    return out


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) <= {"error", "message", "details"} and "error" in body and "message" in body, body
    if code is not None:
        assert body["error"] == code, body
    return body


_recording: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("recorded_sql", default=None)


@contextlib.contextmanager
def recorded_sql(app, *, parameters: bool = False) -> Iterator[list[Any]]:
    """The SQL statements run inside the block by this task and the tasks it starts (a request
    through the ASGI transport, its relay), whitespace folded, lower case; the app's background
    loops (jobs, usage flush) run in their own contexts and are not recorded. With `parameters`,
    each item is (statement, its bound parameters)."""
    sql: list[Any] = []

    def record(_conn, _cursor, statement, bound, *_args) -> None:
        target = _recording.get()
        if target is not None:
            folded = " ".join(statement.split()).lower()
            target.append((folded, bound) if parameters else folded)

    engine = app.state.kernel.db.engine.sync_engine
    token = _recording.set(sql)
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        yield sql
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
        _recording.reset(token)
