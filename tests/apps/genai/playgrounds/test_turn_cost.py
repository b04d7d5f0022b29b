"""What a turn costs beyond the model: the relay's per-token encoding and the statements that
persist a turn."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from kiln.apps.genai.playgrounds.chat import sse, sse_delta
from tests.apps.genai.playgrounds.helpers import P, chat_ready, new_session


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


def test_delta_events_are_encoded_as_the_generic_event_writer_does() -> None:
    for text in ["t1 ", "", 'quote " back\\slash\nnewline', "é \u2028 😀 \x00"]:
        assert sse_delta(text) == sse("delta", {"text": text})


async def test_a_turn_is_persisted_with_one_update_of_its_session(llm, app, client):
    h = await chat_ready(app, client)
    sid = (await new_session(client, h["ann"]))["id"]
    sql: list[str] = []
    recording = [False]

    def record(_conn, _cursor, statement, *_args) -> None:
        if recording[0]:
            sql.append(" ".join(statement.split()).lower())

    event.listen(app.state.kernel.db.engine.sync_engine, "before_cursor_execute", record)
    for turn, prompt in enumerate(("first question", "second question")):
        llm.script(f"answer {turn}")
        sql.clear()
        recording[0] = True
        r = await client.post(f"{P}/sessions/{sid}/messages", headers=h["ann"], json={"prompt": prompt})
        recording[0] = False
        assert r.status_code == 200, r.text
        updates = [s for s in sql if s.startswith("update genai_playground_sessions")]
        assert len(updates) == 1 and not [s for s in sql if "max(" in s], sql
    messages = (await client.get(f"{P}/sessions/{sid}", headers=h["ann"])).json()["session"]["messages"]
    assert [m["content"] for m in messages] == ["first question", "answer 0", "second question", "answer 1"]
