"""The platform embeddings and vector proof routes through the active (local-default) bindings."""

from __future__ import annotations

from tests.apps.genai.context.helpers import create_kb, superadmin
from tests.apps.genai.helpers import assert_envelope, login, make_user


async def test_embeddings_and_vector_proof(app, client):
    headers = await superadmin(app, client)
    response = await client.post("/v1/platform/embeddings", headers=headers, json={"input": ["hello", "world"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dimension"] == 384 and body["count"] == 2 and len(body["embeddings"][0]) == 384
    assert body["provider"]["provider_key"] == "local_embeddings"
    ensure = await client.post("/v1/platform/vector/indexes/ensure", headers=headers, json={"index": "proof"})
    assert ensure.status_code == 200 and ensure.json()["index"]["dimension"] == 384
    docs = [
        {"id": "cats", "text": "Cats purr and chase mice.", "metadata": {"n": 1}},
        {"id": "rain", "text": "Rain falls from clouds as water droplets."},
    ]
    upsert = await client.post(
        "/v1/platform/vector/documents/upsert", headers=headers, json={"index": "proof", "documents": docs}
    )
    assert upsert.status_code == 200 and upsert.json()["count"] == 2
    query = await client.post(
        "/v1/platform/vector/query",
        headers=headers,
        json={"index": "proof", "query_text": "kittens hunting mice", "top_k": 2},
    )
    results = query.json()["results"]
    assert results[0]["id"] == "cats" and results[0]["metadata"] == {"n": 1} and results[0]["text"].startswith("Cats")
    deleted = await client.post(
        "/v1/platform/vector/documents/delete", headers=headers, json={"index": "proof", "ids": ["cats"]}
    )
    assert deleted.status_code == 200
    query = await client.post(
        "/v1/platform/vector/query", headers=headers, json={"index": "proof", "query_text": "kittens", "top_k": 2}
    )
    assert [r["id"] for r in query.json()["results"]] == ["rain"]
    # A KB's index is not the proof routes' to write; unknown index; roles.
    kb = await create_kb(client, headers, "owned")
    assert_envelope(
        await client.post(
            "/v1/platform/vector/documents/upsert",
            headers=headers,
            json={"index": kb["active_index"], "documents": docs},
        ),
        409,
        "index_owned_by_knowledge_base",
    )
    assert_envelope(
        await client.post("/v1/platform/vector/query", headers=headers, json={"index": "nothing", "query_text": "x"}),
        404,
        "vector_index_not_found",
    )
    assert_envelope(await client.post("/v1/platform/embeddings", headers=headers, json={"input": []}), 400)
    await make_user(app, "admin@example.com", "admin")
    admin = await login(client, "admin@example.com")
    assert_envelope(await client.post("/v1/platform/embeddings", headers=admin, json={"input": "x"}), 403)
