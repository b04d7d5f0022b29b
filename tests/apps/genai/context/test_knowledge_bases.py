"""Knowledge bases end to end through the API, on SQLite and PostgreSQL: create, ingest as jobs,
semantic / keyword / hybrid retrieval, filters, immutability, updates and deletes."""

from __future__ import annotations

import pytest

from tests.apps.genai.context.helpers import KB, add_docs, create_kb, providers, query, superadmin, wait_runs
from tests.apps.genai.helpers import assert_envelope, login, make_user

QUESTIONS = [
    ("How do bees make honey?", "Honey bees"),
    ("What happens when magma reaches the surface?", "Volcanoes"),
    ("Which bread uses wild yeast?", "Sourdough bread"),
    ("Who keeps the egg warm in Antarctica?", "Penguins"),
    ("How is sunlight turned into electricity?", "Solar panels"),
]


async def test_ingest_and_retrieve_every_method(app, client):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers)
    assert kb["vectorization"]["embedding_dimension"] == 384
    assert kb["vectorization"]["embedding_model"].endswith("all-MiniLM-L6-v2")
    assert kb["sync_status"] == "ready" and kb["eligible_for_binding"] is True
    ids = await add_docs(client, headers, kb["id"])
    detail = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert detail["document_count"] == 5 and detail["chunk_count"] >= 5 and detail["last_sync_at"]
    for method in ("semantic", "keyword", "hybrid"):
        for question, title in QUESTIONS:
            body = await query(client, headers, kb["id"], question, search_method=method, top_k=3)
            assert body["results"][0]["title"] == title, (method, question, body["results"])
            assert body["results"][0]["document_id"] == ids[title]
    hybrid = await query(client, headers, kb["id"], "bees honey", search_method="hybrid", hybrid_alpha=0.7)
    assert hybrid["retrieval"]["hybrid_fusion"] == "weighted"
    assert set(hybrid["results"][0]["relevance_components"]) == {"semantic_score", "keyword_score"}
    # Filters on declared fields, typed; unknown fields refused.
    animals = await query(client, headers, kb["id"], "eggs and honey", filters={"category": "animals"}, top_k=10)
    assert {r["title"] for r in animals["results"]} == {"Honey bees", "Penguins"}
    recent = await query(client, headers, kb["id"], "sunlight", filters={"year": "2023"}, search_method="keyword")
    assert [r["title"] for r in recent["results"]] == ["Solar panels"]
    assert_envelope(
        await client.post(
            f"{KB}/{kb['id']}/query", headers=headers, json={"query_text": "x", "filters": {"color": "red"}}
        ),
        400,
        "invalid_metadata",
    )
    # Score threshold and top_k.
    strict = await query(client, headers, kb["id"], "How do bees make honey?", score_threshold=0.5)
    assert [r["title"] for r in strict["results"]] == ["Honey bees"]
    assert_envelope(
        await client.post(f"{KB}/{kb['id']}/query", headers=headers, json={"query_text": "x", "top_k": 0}),
        400,
        "invalid_top_k",
    )


async def test_rules_and_roles(app, client):
    headers = await superadmin(app, client)
    embeddings, store = await providers(client, headers)
    kb = await create_kb(client, headers, "rules")
    assert_envelope(
        await client.post(
            KB,
            headers=headers,
            json={
                "slug": "big",
                "display_name": "Big",
                "backing_provider_instance_id": store,
                "chunking": {
                    "strategy": "fixed_length",
                    "config": {"unit": "tokens", "chunk_length": 400, "chunk_overlap": 10},
                },
            },
        ),
        400,
        "knowledge_base_chunking_exceeds_embeddings_limit",
    )
    assert_envelope(
        await client.post(
            KB, headers=headers, json={"slug": "rules", "display_name": "Again", "backing_provider_instance_id": store}
        ),
        409,
    )
    # Chunking may change while empty, not once documents exist.
    new_chunking = {"strategy": "fixed_length", "config": {"unit": "tokens", "chunk_length": 100, "chunk_overlap": 10}}
    response = await client.put(f"{KB}/{kb['id']}", headers=headers, json={"chunking": new_chunking})
    assert response.status_code == 200
    assert response.json()["knowledge_base"]["chunking"]["config"]["chunk_length"] == 100
    await client.post(f"{KB}/{kb['id']}/documents", headers=headers, json={"title": "T", "text": "Some text."})
    await wait_runs(client, headers, kb["id"])
    new_chunking["config"]["chunk_length"] = 80
    assert_envelope(
        await client.put(f"{KB}/{kb['id']}", headers=headers, json={"chunking": new_chunking}),
        409,
        "chunking_immutable",
    )
    assert_envelope(
        await client.put(
            f"{KB}/{kb['id']}",
            headers=headers,
            json={
                "vectorization": {
                    "mode": "vanessa_embeddings",
                    "embedding_provider_instance_id": embeddings,
                    "embedding_resource_id": "other-model",
                }
            },
        ),
        409,
        "vectorization_immutable",
    )
    # Roles: an admin reads and queries, cannot write; a user cannot read.
    await make_user(app, "admin@example.com", "admin")
    await make_user(app, "user@example.com", "user")
    admin, user = await login(client, "admin@example.com"), await login(client, "user@example.com")
    assert (await client.get(KB, headers=admin)).status_code == 200
    assert (await client.post(f"{KB}/{kb['id']}/query", headers=admin, json={"query_text": "text"})).status_code == 200
    assert_envelope(
        await client.post(f"{KB}/{kb['id']}/documents", headers=admin, json={"title": "x", "text": "y"}),
        403,
        "insufficient_role",
    )
    assert_envelope(await client.get(KB, headers=user), 403, "insufficient_role")
    assert_envelope(await client.get(KB), 401)
    assert_envelope(await client.get(f"{KB}/nope", headers=headers), 404, "knowledge_base_not_found")
    # Control characters are stripped; NUL in JSON is refused by the surface, NUL in a file stripped
    # (PostgreSQL text refuses NUL).
    response = await client.post(
        f"{KB}/{kb['id']}/documents", headers=headers, json={"title": "Ctl", "text": "bell \x07 and \x1b escape"}
    )
    assert response.status_code == 201 and response.json()["document"]["text"] == "bell  and  escape"
    assert_envelope(
        await client.post(f"{KB}/{kb['id']}/documents", headers=headers, json={"title": "Nul", "text": "null\x00byte"}),
        400,
        "invalid_payload",
    )
    response = await client.post(
        f"{KB}/{kb['id']}/uploads", headers=headers, files={"files": ("nul.txt", b"null\x00byte", "text/plain")}
    )
    assert response.status_code == 201 and response.json()["documents"][0]["text"] == "nullbyte"
    assert (await client.delete(f"{KB}/{kb['id']}", headers=headers)).status_code == 200
    assert (await client.get(f"{KB}/{kb['id']}", headers=headers)).status_code == 404


async def test_update_and_delete_keep_retrieval_consistent(app, client):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "edits")
    ids = await add_docs(client, headers, kb["id"])
    response = await client.put(
        f"{KB}/{kb['id']}/documents/{ids['Volcanoes']}",
        headers=headers,
        json={"text": "Glaciers are slow rivers of ice that carve valleys in mountains over thousands of years."},
    )
    assert response.status_code == 200 and response.json()["sync_run"]
    # Until the run swaps the chunks, the old text answers; afterwards the new one, never none.
    await wait_runs(client, headers, kb["id"])
    body = await query(client, headers, kb["id"], "rivers of ice carving valleys", top_k=1)
    assert body["results"][0]["document_id"] == ids["Volcanoes"] and "Glaciers" in body["results"][0]["text"]
    assert all(
        "magma" not in r["text"]
        for r in (await query(client, headers, kb["id"], "magma", top_k=10, search_method="keyword"))["results"]
    )
    assert (await client.delete(f"{KB}/{kb['id']}/documents/{ids['Penguins']}", headers=headers)).status_code == 200
    for method in ("semantic", "keyword"):
        results = (await query(client, headers, kb["id"], "penguin egg", top_k=10, search_method=method))["results"]
        assert ids["Penguins"] not in {r["document_id"] for r in results}
    listing = (await client.get(f"{KB}/{kb['id']}/documents", headers=headers)).json()
    assert listing["count"] == 4
    assert (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]["document_count"] == 4


@pytest.mark.parametrize("method", ["semantic", "hybrid"])
async def test_query_checks_active_bindings(app, client, method):
    headers = await superadmin(app, client)
    kb = await create_kb(client, headers, "bound")
    await add_docs(client, headers, kb["id"])
    # A KB on another vector provider than the active deployment's is refused.
    from kiln.apps.genai.context.models import KnowledgeBase

    async with app.state.kernel.db.session() as session:
        row = await session.get(KnowledgeBase, kb["id"])
        row.embedding_resource_id = "sentence-transformers/other-model"
        await session.commit()
    assert_envelope(
        await client.post(
            f"{KB}/{kb['id']}/query", headers=headers, json={"query_text": "bees", "search_method": method}
        ),
        409,
        "knowledge_base_embeddings_resource_mismatch",
    )
    keyword = await query(client, headers, kb["id"], "bees", search_method="keyword")
    assert keyword["results"][0]["title"] == "Honey bees"


async def test_binding_a_knowledge_base(app, client):
    headers = await superadmin(app, client)
    _, store = await providers(client, headers)
    kb = await create_kb(client, headers, "bindme")
    other = await create_kb(client, headers, "unbound")
    deployments = (await client.get("/v1/platform/deployments", headers=headers)).json()
    items = deployments.get("deployment_profiles") or deployments.get("deployments")
    local = next(d for d in items if d["slug"] == "local-default")
    url = f"/v1/platform/deployments/{local['id']}/bindings/vector_store"
    response = await client.put(
        url,
        headers=headers,
        json={
            "provider_id": store,
            "resource_policy": {"selection_mode": "explicit"},
            "resources": [{"ref_type": "knowledge_base", "knowledge_base_id": kb["id"]}],
            "default_resource_id": kb["id"],
        },
    )
    assert response.status_code == 200, response.text
    assert_envelope(
        await client.put(
            url,
            headers=headers,
            json={"provider_id": store, "resources": [{"ref_type": "knowledge_base", "knowledge_base_id": "missing"}]},
        ),
        400,
        "knowledge_base_not_found",
    )
    detail = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert detail["binding_count"] == 1
    assert_envelope(await client.delete(f"{KB}/{kb['id']}", headers=headers), 409, "knowledge_base_in_use")
    assert_envelope(
        await client.put(f"{KB}/{kb['id']}", headers=headers, json={"lifecycle_state": "archived"}),
        409,
        "knowledge_base_in_use",
    )
    assert (
        await client.post(
            f"{KB}/{kb['id']}/query", headers=headers, json={"query_text": "x", "search_method": "keyword"}
        )
    ).status_code == 200
    assert_envelope(
        await client.post(
            f"{KB}/{other['id']}/query", headers=headers, json={"query_text": "x", "search_method": "keyword"}
        ),
        409,
        "knowledge_base_not_bound",
    )
