"""Regressions found by driving the reference's React frontend against Kiln (part-1 screens)."""

from __future__ import annotations

from tests.apps.genai.helpers import role_headers
from tests.apps.genai.test_platform import deployments_by_slug

# The frontend translates `quoteOfTheDay.tones.<tone>` and knows only these two; any other seeded
# tone is shown to the user as the raw i18n key.
FRONTEND_TONES = {"reflective", "funny"}


async def test_seeded_quote_tones_are_the_ones_the_frontend_translates(app, client):
    h = await role_headers(app, client)
    summary = (await client.get("/v1/quotes/summary", headers=h["admin"])).json()["summary"]
    assert summary["total"] > 0
    assert {b["value"] for b in summary["by_tone"]} <= FRONTEND_TONES
    for lang in ("en", "es"):
        quote = (await client.get(f"/v1/content/quote-of-the-day?lang={lang}")).json()["quote"]
        assert quote["tone"] in FRONTEND_TONES


async def test_seeded_local_embeddings_binding_is_ready_without_a_bound_model(app, client):
    # The platform pages showed the fresh `local-default` as "Incomplete: embeddings — Bind at least one
    # model resource" although Kiln's in-process embedder needs no ModelOps model to serve.
    h = await role_headers(app, client)
    local = (await deployments_by_slug(client, h["superadmin"]))["local-default"]
    caps = {b["capability"]: b for b in local["bindings"]}
    assert caps["embeddings"]["configuration_status"]["is_ready"] is True, caps["embeddings"]["configuration_status"]
    assert caps["vector_store"]["configuration_status"]["is_ready"] is True
    assert local["configuration_status"]["incomplete_capabilities"] == ["llm_inference"]
