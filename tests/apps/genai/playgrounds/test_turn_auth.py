"""A session turn authenticates a login in the turn's own statement (`DeferredLogin`): the same
answers as every other route for a logged-out, deactivated or foreign caller, before any 404 or
400, and never a model call for them; API tokens are looked up as before."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kiln.core import auth as core_auth
from tests.apps.genai.helpers import assert_envelope, login, make_user
from tests.apps.genai.playgrounds.helpers import P, chat_ready, new_session, parse_events

ROUTES = ("/messages", "/messages/stream")


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


def _answer(r) -> str:
    if r.headers["content-type"].startswith("text/event-stream"):
        events = parse_events(r.text)
        assert events[-1][0] == "complete", events
        return events[-1][1]["output"]
    return r.json()["output"]


@dataclass
class Ready:
    headers: dict[str, dict[str, str]]  # sa, ann, bob
    sid: str  # ann's chat session
    calls: int  # model calls so far (readying the model made some)


@pytest.fixture
async def ready(llm, app, client) -> Ready:
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    return Ready(h, sid, len(llm.chat_calls))


async def _turn(client, target: str, route: str, headers: dict[str, str] | None, body=None):
    return await client.post(
        f"{P}/sessions/{target}{route}", headers=headers, json={"prompt": "hi"} if body is None else body
    )


@pytest.mark.parametrize("route", ROUTES)
async def test_a_logged_out_token_is_refused_before_the_session_is_looked_at(llm, client, ready, route):
    ann = ready.headers["ann"]
    llm.script("answered")
    r = await _turn(client, ready.sid, route, ann)
    assert r.status_code == 200 and _answer(r) == "answered", r.text
    assert (await client.post("/auth/logout", headers=ann)).status_code == 200
    for target in (ready.sid, "no-such-session", "x" * 65):  # found, missing, too long to look up
        for body in ({"prompt": "hi"}, {"prompt": ""}, []):
            assert_envelope(await _turn(client, target, route, ann, body), 401, "invalid_token")
    assert len(llm.chat_calls) == ready.calls + 1


@pytest.mark.parametrize("route", ROUTES)
async def test_a_deactivated_caller_is_refused_with_its_own_session(llm, client, ready, route):
    ann = (await client.get("/auth/me", headers=ready.headers["ann"])).json()["user"]
    r = await client.post(f"/auth/users/{ann['id']}/deactivate", headers=ready.headers["sa"])
    assert r.status_code == 200, r.text
    assert_envelope(await _turn(client, ready.sid, route, ready.headers["ann"]), 401, "account_inactive")
    assert len(llm.chat_calls) == ready.calls


@pytest.mark.parametrize("route", ROUTES)
async def test_a_valid_login_gets_404_for_a_missing_or_foreign_session_before_its_bad_body(llm, client, ready, route):
    for target in (ready.sid, "no-such-session"):
        r = await _turn(client, target, route, ready.headers["bob"], {"prompt": ""})
        assert_envelope(r, 404, "playground_session_not_found")
    ann = ready.headers["ann"]
    assert_envelope(await _turn(client, ready.sid, route, ann, {"prompt": ""}), 400, "invalid_prompt")
    assert_envelope(await _turn(client, ready.sid, route, ann, []), 400, "invalid_payload")
    assert len(llm.chat_calls) == ready.calls


@pytest.mark.parametrize("route", ROUTES)
async def test_missing_and_forged_tokens_are_refused(llm, client, ready, route):
    assert_envelope(await _turn(client, ready.sid, route, None), 401, "missing_auth")
    forged = {"Authorization": ready.headers["ann"]["Authorization"][:-4] + "AAAA"}
    assert_envelope(await _turn(client, ready.sid, route, forged), 401)
    assert len(llm.chat_calls) == ready.calls


@pytest.mark.parametrize("route", ROUTES)
async def test_an_api_token_takes_a_turn_and_a_revoked_one_does_not(llm, app, client, ready, route):
    await make_user(app, "tok@example.com")
    sid = (await new_session(client, await login(client, "tok@example.com")))["id"]
    async with app.state.kernel.db.session() as session:
        user = await core_auth.get_user_by_email(session, "tok@example.com")
        stored, plaintext = await core_auth.create_api_token(session, user, "bench")
        await session.commit()
    headers = {"Authorization": f"Bearer {plaintext}"}
    llm.script("by token")
    r = await _turn(client, sid, route, headers)
    assert r.status_code == 200 and _answer(r) == "by token", r.text
    async with app.state.kernel.db.session() as session:
        await core_auth.revoke_api_token(session, user, stored.id)
        await session.commit()
    assert_envelope(await _turn(client, sid, route, headers), 401)
    assert len(llm.chat_calls) == ready.calls + 1
