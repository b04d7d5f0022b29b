"""A session turn authenticates a login in the turn's own statement (`DeferredLogin`): the same
answers as every other route for a logged-out, deactivated or foreign caller, before any 404 or
400, and never a model call for them; API tokens are looked up as before."""

from __future__ import annotations

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


@pytest.mark.parametrize("route", ROUTES)
async def test_a_logged_out_token_is_refused_before_the_session_is_looked_at(llm, app, client, route):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    llm.script("answered")
    r = await client.post(f"{P}/sessions/{sid}{route}", headers=h["ann"], json={"prompt": "hi"})
    assert r.status_code == 200 and _answer(r) == "answered", r.text
    assert (await client.post("/auth/logout", headers=h["ann"])).status_code == 200
    calls = len(llm.chat_calls)
    for target in (sid, "no-such-session", "x" * 65):  # found, missing, too long to look up
        for body in ({"prompt": "hi"}, {"prompt": ""}, []):
            r = await client.post(f"{P}/sessions/{target}{route}", headers=h["ann"], json=body)
            assert_envelope(r, 401, "invalid_token")
    assert len(llm.chat_calls) == calls


@pytest.mark.parametrize("route", ROUTES)
async def test_a_deactivated_caller_is_refused_with_its_own_session(llm, app, client, route):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    calls = len(llm.chat_calls)  # model checks while it was readied
    ann = (await client.get("/auth/me", headers=h["ann"])).json()["user"]
    r = await client.post(f"/auth/users/{ann['id']}/deactivate", headers=h["sa"])
    assert r.status_code == 200, r.text
    r = await client.post(f"{P}/sessions/{sid}{route}", headers=h["ann"], json={"prompt": "hi"})
    assert_envelope(r, 401, "account_inactive")
    assert len(llm.chat_calls) == calls


@pytest.mark.parametrize("route", ROUTES)
async def test_a_valid_login_gets_404_for_a_missing_or_foreign_session_before_its_bad_body(llm, app, client, route):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    calls = len(llm.chat_calls)
    for target in (sid, "no-such-session"):
        r = await client.post(f"{P}/sessions/{target}{route}", headers=h["bob"], json={"prompt": ""})
        assert_envelope(r, 404, "playground_session_not_found")
    assert_envelope(await client.post(f"{P}/sessions/{sid}{route}", headers=h["ann"], json={}), 400, "invalid_prompt")
    r = await client.post(f"{P}/sessions/{sid}{route}", headers=h["ann"], json=[])
    assert_envelope(r, 400, "invalid_payload")
    assert len(llm.chat_calls) == calls


@pytest.mark.parametrize("route", ROUTES)
async def test_missing_and_forged_tokens_are_refused(llm, app, client, route):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    calls = len(llm.chat_calls)
    assert_envelope(await client.post(f"{P}/sessions/{sid}{route}", json={"prompt": "hi"}), 401, "missing_auth")
    forged = {"Authorization": h["ann"]["Authorization"][:-4] + "AAAA"}
    assert_envelope(await client.post(f"{P}/sessions/{sid}{route}", headers=forged, json={"prompt": "hi"}), 401)
    assert len(llm.chat_calls) == calls


@pytest.mark.parametrize("route", ROUTES)
async def test_an_api_token_takes_a_turn_and_a_revoked_one_does_not(llm, app, client, route):
    await chat_ready(app, client)
    await make_user(app, "tok@example.com")
    calls = len(llm.chat_calls)
    sid = (await new_session(client, await login(client, "tok@example.com")))["id"]
    async with app.state.kernel.db.session() as session:
        user = await core_auth.get_user_by_email(session, "tok@example.com")
        stored, plaintext = await core_auth.create_api_token(session, user, "bench")
        await session.commit()
    headers = {"Authorization": f"Bearer {plaintext}"}
    llm.script("by token")
    r = await client.post(f"{P}/sessions/{sid}{route}", headers=headers, json={"prompt": "hi"})
    assert r.status_code == 200 and _answer(r) == "by token", r.text
    async with app.state.kernel.db.session() as session:
        await core_auth.revoke_api_token(session, user, stored.id)
        await session.commit()
    assert_envelope(await client.post(f"{P}/sessions/{sid}{route}", headers=headers, json={"prompt": "hi"}), 401)
    assert len(llm.chat_calls) == calls + 1
