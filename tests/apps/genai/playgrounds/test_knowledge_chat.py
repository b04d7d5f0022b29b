"""Knowledge chat: retrieval through the KB's query path with bindings checked at request time,
history-aware query rewriting, the session's search settings, and citations only for the
references the answer cites."""

from __future__ import annotations

import pytest

from kiln.apps.genai.context.models import KnowledgeBase
from tests.apps.genai.context.helpers import add_docs, create_kb
from tests.apps.genai.helpers import assert_envelope
from tests.apps.genai.modelops_helpers import active_deployment
from tests.apps.genai.playgrounds.helpers import MODEL, P, chat_ready, parse_events, recorded_sql


@pytest.fixture
def llm(monkeypatch, fake_llm):
    monkeypatch.setenv("KILN_LLM_URL", fake_llm.url)
    return fake_llm


async def knowledge_session(client, headers, kb_id: str, **binding) -> dict:
    r = await client.post(
        f"{P}/sessions",
        headers=headers,
        json={
            "playground_kind": "knowledge",
            "model_selection": {"model_id": MODEL["id"]},
            "knowledge_binding": {"knowledge_base_id": kb_id, **binding},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["session"]


async def test_knowledge_chat_citations_and_sources(llm, app, client):
    h = await chat_ready(app, client)
    kb = await create_kb(client, h["sa"])
    ids = await add_docs(client, h["sa"], kb["id"])
    opts = (await client.get(f"{P}/knowledge-base-options", headers=h["ann"])).json()
    assert [k["id"] for k in opts["knowledge_bases"]] == [kb["id"]]
    s = await knowledge_session(client, h["ann"], kb["id"], top_k=3)
    assert s["assistant_ref"] == "agent.knowledge_chat" and s["knowledge_binding"]["top_k"] == 3

    llm.script("Bees turn nectar into honey [1]. Also see [7].")
    r = await client.post(
        f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "How do bees make honey?"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    system = llm.chat_calls[-1]["json"]["messages"][0]
    assert system["role"] == "system" and "[1] Honey bees" in system["content"]
    assert "Answer using only the retrieved references" in system["content"]  # the agent's instructions
    assert body["output"] == "Bees turn nectar into honey [1]. Also see ."  # no invented marker survives
    assert len(body["sources"]) == 3 and body["sources"][0]["document_id"] == ids["Honey bees"]
    first = body["sources"][0]
    assert first["cited"] is True and first["chunk_id"] and isinstance(first["score"], float)
    assert [ref["document_id"] for ref in body["references"]] == [ids["Honey bees"]]
    assert all(not src["cited"] for src in body["sources"][1:])
    assert body["retrieval"]["result_count"] == 3 and body["retrieval"]["search_method"] == "semantic"
    stored = body["session"]["messages"][-1]["metadata"]
    assert stored["references"][0]["citation_label"] == "[1]" and stored["knowledge_base_id"] == kb["id"]

    # An answer that cites nothing gets no markers and no references.
    llm.script("I cannot tell.")
    r = await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "Who won in 1950?"})
    assert r.json()["output"] == "I cannot tell." and r.json()["references"] == []

    # Streaming knowledge chat relays tokens too.
    llm.script("Magma rises [1]")
    r = await client.post(
        f"{P}/sessions/{s['id']}/messages/stream",
        headers=h["ann"],
        json={"prompt": "What happens when magma reaches the surface?"},
    )
    events = parse_events(r.text)
    assert [e for e, _ in events][-1] == "complete" and events[0][0] == "delta"
    assert events[-1][1]["references"][0]["document_id"] == ids["Volcanoes"]


async def test_follow_up_query_is_rewritten_with_history(llm, app, client):
    h = await chat_ready(app, client)
    kb = await create_kb(client, h["sa"])
    ids = await add_docs(client, h["sa"], kb["id"])
    s = await knowledge_session(client, h["ann"], kb["id"], search_method="keyword", top_k=2)
    await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "How do bees make honey?"})
    r = await client.post(
        f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "and what happens to it in winter?"}
    )
    body = r.json()
    assert "bees" in body["retrieval"]["query"] and body["retrieval"]["search_method"] == "keyword"
    assert body["sources"][0]["document_id"] == ids["Honey bees"]
    # Without the history the same words retrieve another subject.
    r = await client.post(
        f"{P}/temporary/messages",
        headers=h["ann"],
        json={
            "playground_kind": "knowledge",
            "model_selection": {"model_id": MODEL["id"]},
            "knowledge_binding": {"knowledge_base_id": kb["id"], "search_method": "keyword"},
            "prompt": "and what happens to it in winter?",
        },
    )
    assert r.json()["sources"][0]["document_id"] == ids["Penguins"]


async def test_knowledge_chat_checks_bindings_at_request_time(llm, app, client):
    h = await chat_ready(app, client)
    kb = await create_kb(client, h["sa"])
    other = await create_kb(client, h["sa"], "other")
    await add_docs(client, h["sa"], kb["id"])
    s = await knowledge_session(client, h["ann"], kb["id"])
    # The KB's embeddings model is no longer the active binding's: refused, not wrong-space results.
    async with app.state.kernel.db.session() as session:
        row = await session.get(KnowledgeBase, kb["id"])
        pinned, row.embedding_resource_id = row.embedding_resource_id, "sentence-transformers/other-model"
        await session.commit()
    for path in ("messages", "messages/stream"):
        assert_envelope(
            await client.post(f"{P}/sessions/{s['id']}/{path}", headers=h["ann"], json={"prompt": "bees?"}),
            409,
            "knowledge_base_embeddings_resource_mismatch",
        )
    async with app.state.kernel.db.session() as session:
        (await session.get(KnowledgeBase, kb["id"])).embedding_resource_id = pinned
        await session.commit()
    # Narrow the binding's namespace to the other KB: this one is no longer bound.
    dep = await active_deployment(client, h["sa"])
    vector = next(b for b in dep["bindings"] if b["capability"] == "vector_store")
    r = await client.put(
        f"/v1/platform/deployments/{dep['id']}/bindings/vector_store",
        headers=h["sa"],
        json={
            "provider_id": vector["provider"]["id"],
            "resources": [],
            "resource_policy": {"selection_mode": "dynamic_namespace", "namespace_prefix": other["index_name"]},
        },
    )
    assert r.status_code == 200, r.text
    assert_envelope(
        await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "bees?"}),
        409,
        "knowledge_base_not_bound",
    )
    opts = (await client.get(f"{P}/options", headers=h["ann"])).json()
    assert [k["id"] for k in opts["knowledge_bases"]] == [other["id"]]
    # Bound explicitly as a resource of the vector binding: usable again.
    r = await client.put(
        f"/v1/platform/deployments/{dep['id']}/bindings/vector_store",
        headers=h["sa"],
        json={
            "provider_id": vector["provider"]["id"],
            "resources": [{"knowledge_base_id": kb["id"]}],
            "resource_policy": {"selection_mode": "explicit"},
        },
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "bees?"})
    assert r.status_code == 200 and r.json()["sources"], r.text
    missing = await knowledge_session(client, h["ann"], "0" * 36)
    assert_envelope(
        await client.post(f"{P}/sessions/{missing['id']}/messages", headers=h["ann"], json={"prompt": "x"}),
        404,
        "knowledge_base_not_found",
    )


async def test_source_file_of_a_cited_local_document(llm, app, client, tmp_path):
    from kiln.apps.genai.context.config import ContextSettings
    from tests.apps.genai.context.helpers import KB, wait_runs

    root = tmp_path / "roots" / "docs"
    root.mkdir(parents=True)
    (root / "holidays.txt").write_text("Employees have twenty-five days of paid holiday a year.")
    app.state.kernel.set_surface_settings(ContextSettings(source_roots=[str(tmp_path / "roots")]))
    h = await chat_ready(app, client)
    kb = await create_kb(client, h["sa"], "handbook")
    source = (
        await client.post(
            f"{KB}/{kb['id']}/sources", headers=h["sa"], json={"relative_path": "docs", "display_name": "Handbook"}
        )
    ).json()["source"]
    await client.post(f"{KB}/{kb['id']}/sources/{source['id']}/sync", headers=h["sa"])
    await wait_runs(client, h["sa"], kb["id"])
    doc = (await client.get(f"{KB}/{kb['id']}/documents", headers=h["sa"])).json()["documents"][0]
    url = f"{P}/knowledge-bases/{kb['id']}/documents/{doc['id']}/source-file"
    r = await client.get(url, headers=h["ann"])
    assert r.status_code == 200 and r.text.startswith("Employees have")
    assert r.headers["content-type"].startswith("text/")
    assert_envelope(await client.get(url), 401)
    assert_envelope(
        await client.get(f"{P}/knowledge-bases/{kb['id']}/documents/{'0' * 36}/source-file", headers=h["ann"]),
        404,
        "document_not_found",
    )
    (root / "holidays.txt").unlink()
    assert_envelope(await client.get(url, headers=h["ann"]), 404, "source_file_not_found")


async def test_a_knowledge_turn_reads_the_active_bindings_once(llm, app, client):
    """The chat path checks the KB's binding and the query path checks the same bindings again: one
    read serves both (it was two reads of the bindings and their resources per turn)."""
    h = await chat_ready(app, client)
    kb = await create_kb(client, h["sa"])
    await add_docs(client, h["sa"], kb["id"])
    s = await knowledge_session(client, h["ann"], kb["id"], top_k=2)
    llm.script("Bees make honey [1]")
    with recorded_sql(app) as sql:
        r = await client.post(
            f"{P}/sessions/{s['id']}/messages", headers=h["ann"], json={"prompt": "How do bees make honey?"}
        )
    assert r.status_code == 200, r.text
    assert r.json()["references"][0]["title"] == "Honey bees"
    binding_reads = [q for q in sql if "from genai_deployment_bindings" in q]
    resource_reads = [q for q in sql if q.startswith("select") and "from genai_binding_resources" in q]
    # One statement reads the bindings with their resources (outer-joined): it was one each.
    assert len(binding_reads) == 1 and "left outer join genai_binding_resources" in binding_reads[0], sql
    assert not resource_reads, sql
    # The KB, the active deployment's pointer and the agent's instructions come with the turn's own
    # statement (the agent's instructions still reach the prompt, as the citations test checks).
    for table in ("genai_context_knowledge_bases", "genai_active_deployment", "genai_registry_versions"):
        assert not [q for q in sql if q.startswith(f"select {table}.")], (table, sql)
    assert "Answer using only the retrieved references" in llm.chat_calls[-1]["json"]["messages"][0]["content"]
