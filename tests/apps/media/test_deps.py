"""The signed-in user is looked up in the request's own session, not in one of its own."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager

from sqlalchemy import event

from tests.apps.media.mediakit import photo, register, settings, upload  # noqa: F401  (fixture)


@contextmanager
def pool_checkouts(app):
    """Connections checked out by this task (the request runs in it through ASGITransport); the
    engine's background tasks (heartbeats, periodic jobs) check out their own meanwhile."""
    pool = app.state.kernel.db.engine.sync_engine.pool
    me = asyncio.current_task()
    seen: list[int] = []

    def checkout(*_args):
        if asyncio.current_task() is me:
            seen.append(1)

    event.listen(pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", checkout)


async def test_an_authenticated_read_checks_out_one_connection(app, client):
    await register(client, "deps@example.com")
    await client.get("/api/upload/recents")  # warm: nothing of the first request's set-up counts
    with pool_checkouts(app) as seen:
        response = await client.get("/api/upload/recents")
    assert response.status_code == 200
    # The token check and the route share the request's session: one connection, not two.
    assert len(seen) == 1


async def test_a_bad_token_is_still_refused_with_the_contracts_message(app, client):
    client.cookies.set("access_token", "not-a-token")
    response = await client.get("/api/upload/recents")
    assert response.status_code == 401
    assert response.json()["detail"] == "Token expired or invalid"


async def test_an_upload_after_the_shared_lookup_still_stores_and_answers(app, client):
    await register(client, "deps-upload@example.com")
    response = await upload(client, ("a.jpg", photo(), "image/jpeg"))
    assert response.status_code == 201, response.text
    assert len(response.json()["media_ids"]) == 1
