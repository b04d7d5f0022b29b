"""Helpers for knowledge-base API tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.apps.genai.helpers import login, make_user

KB = "/v1/context/knowledge-bases"

DOCS = [
    (
        "Honey bees",
        "animals",
        2021,
        "Honey bees collect nectar from flowers and turn it into honey inside the hive. Worker bees fan the nectar "
        "with their wings to evaporate water, then seal the honeycomb cells with wax.",
    ),
    (
        "Volcanoes",
        "geology",
        2019,
        "A volcano erupts when molten rock called magma rises through cracks in the Earth's crust. Lava flows, ash "
        "clouds and volcanic gases are released during an eruption.",
    ),
    (
        "Sourdough bread",
        "cooking",
        2022,
        "Sourdough bread is leavened by a starter of wild yeast and lactic acid bacteria. The dough ferments slowly, "
        "which gives the loaf its tangy flavour and open crumb.",
    ),
    (
        "Penguins",
        "animals",
        2020,
        "Emperor penguins breed during the Antarctic winter. The male keeps the single egg warm on his feet for about "
        "two months while the female hunts for fish at sea.",
    ),
    (
        "Solar panels",
        "energy",
        2023,
        "Photovoltaic solar panels convert sunlight directly into electricity. Silicon cells absorb photons and "
        "release electrons, producing a direct current that an inverter changes to alternating current.",
    ),
]


async def superadmin(app, client: httpx.AsyncClient) -> dict[str, str]:
    await make_user(app, "root@example.com", "superadmin")
    return await login(client, "root@example.com")


async def providers(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    options = (await client.get("/v1/context/vectorization-options", headers=headers)).json()
    embeddings = next(p["id"] for p in options["embedding_providers"] if p["provider_key"] == "local_embeddings")
    store = next(p["id"] for p in options["vector_store_providers"] if p["provider_key"] == "embedded_vector")
    return embeddings, store


async def create_kb(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    slug: str = "facts",
    *,
    chunk_length: int = 120,
    overlap: int = 20,
    **extra: Any,
) -> dict[str, Any]:
    embeddings, store = await providers(client, headers)
    body = {
        "slug": slug,
        "display_name": slug.title(),
        "backing_provider_instance_id": store,
        "schema": {"properties": [{"name": "category", "data_type": "text"}, {"name": "year", "data_type": "int"}]},
        "vectorization": {"mode": "vanessa_embeddings", "embedding_provider_instance_id": embeddings},
        "chunking": {
            "strategy": "fixed_length",
            "config": {"unit": "tokens", "chunk_length": chunk_length, "chunk_overlap": overlap},
        },
        **extra,
    }
    response = await client.post(KB, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["knowledge_base"]


async def wait_runs(client: httpx.AsyncClient, headers: dict[str, str], kb_id: str, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while True:
        runs = (await client.get(f"{KB}/{kb_id}/sync-runs", headers=headers)).json()["sync_runs"]
        if runs and all(run["status"] in ("ready", "error") for run in runs):
            return runs
        assert time.monotonic() < deadline, runs
        await asyncio.sleep(0.1)


async def add_docs(client: httpx.AsyncClient, headers: dict[str, str], kb_id: str) -> dict[str, str]:
    ids = {}
    for title, category, year, text in DOCS:
        response = await client.post(
            f"{KB}/{kb_id}/documents",
            headers=headers,
            json={"title": title, "text": text, "metadata": {"category": category, "year": year}},
        )
        assert response.status_code == 201, response.text
        ids[title] = response.json()["document"]["id"]
    runs = await wait_runs(client, headers, kb_id)
    assert all(run["status"] == "ready" for run in runs), runs
    return ids


async def query(client: httpx.AsyncClient, headers: dict[str, str], kb_id: str, text: str, **extra: Any) -> dict:
    response = await client.post(f"{KB}/{kb_id}/query", headers=headers, json={"query_text": text, **extra})
    assert response.status_code == 200, response.text
    return response.json()


async def use_pgvector(client: httpx.AsyncClient, headers: dict[str, str], dsn: str, slug: str) -> str:
    """A pgvector provider on `dsn` bound as local-default's vector store (KBs under `kb_`); its id."""
    response = await client.post(
        "/v1/platform/providers",
        headers=headers,
        json={"slug": slug, "provider_key": "pgvector_local", "display_name": "pgvector", "endpoint_url": dsn},
    )
    assert response.status_code == 201, response.text
    provider = response.json().get("provider") or response.json()
    deployments = (await client.get("/v1/platform/deployments", headers=headers)).json()
    local = next(
        d for d in deployments.get("deployment_profiles") or deployments["deployments"] if d["slug"] == "local-default"
    )
    response = await client.put(
        f"/v1/platform/deployments/{local['id']}/bindings/vector_store",
        headers=headers,
        json={
            "provider_id": provider["id"],
            "resource_policy": {"selection_mode": "dynamic_namespace", "namespace_prefix": "kb_"},
        },
    )
    assert response.status_code == 200, response.text
    return provider["id"]
