"""Recommendations with the local all-MiniLM-L6-v2 embeddings: related above unrelated, index follows edits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kiln.apps.lora.models import Embedding
from tests.apps.lora.kit import configure, create, write_lora

LIBRARY = [
    ("Ink Wash", ["ink wash", "sumi-e", "monochrome"], ["traditional", "painting"], "sd_v1"),
    ("Sumi Brush", ["sumi-e brush strokes", "ink painting"], ["painting", "monochrome"], "sd_v1"),
    ("Racing Cars", ["sports car", "race track"], ["vehicle", "photo"], "sd_v1"),
    ("Ink XL", ["ink wash", "sumi-e"], ["painting"], "sdxl_base_v1-0"),
]


async def _library(client, lora_dir: Path) -> dict[str, str]:
    ids = {}
    for i, (name, words, tags, base) in enumerate(LIBRARY):
        a = await create(
            client, write_lora(lora_dir / f"r{i}.safetensors", base=base), name, trained_words=words, tags=tags
        )
        ids[name] = a["id"]
    return ids


async def _similar(client, lora_id: str) -> dict:
    return (await client.get(f"/v1/recommendations/similar/{lora_id}", params={"similarity_threshold": 0})).json()


async def test_similar_and_for_prompt(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    ids = await _library(client, lora_dir)
    res = await _similar(client, ids["Ink Wash"])
    names = [r["lora_name"] for r in res["recommendations"]]
    assert names[0] == "Sumi Brush" and "Ink XL" not in names  # another base model is excluded
    assert res["recommendations"][0]["similarity_score"] > res["recommendations"][-1]["similarity_score"]
    prompt = (
        await client.post(
            "/api/v1/recommendations/for-prompt", json={"prompt": "a red sports car on a race track", "limit": 4}
        )
    ).json()
    assert prompt["recommendations"][0]["lora_name"] == "Racing Cars"
    assert "Trigger words in prompt" in prompt["recommendations"][0]["explanation"]
    excluded = (
        await client.post(
            "/v1/recommendations/for-prompt", json={"prompt": "sports car", "active_loras": [ids["Racing Cars"]]}
        )
    ).json()
    assert ids["Racing Cars"] not in [r["lora_id"] for r in excluded["recommendations"]]
    stats = (await client.get("/v1/recommendations/stats")).json()
    assert stats["total_loras"] == 4 and stats["loras_with_embeddings"] == 4 and stats["embedding_coverage"] == 1.0
    assert stats["avg_recommendation_time_ms"] > 0 and 0 < stats["cache_hit_rate"] <= 1
    assert (await client.get("/v1/recommendations/similar/nope")).status_code == 404


async def test_index_follows_edits_and_feedback(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    ids = await _library(client, lora_dir)
    status = (await client.get(f"/v1/recommendations/embeddings/{ids['Racing Cars']}")).json()
    assert status["needs_recomputation"] and not status["has_semantic_embedding"]
    computed = (await client.post("/v1/recommendations/embeddings/compute", json={"compute_all": True})).json()
    assert computed["processed_count"] == 4
    again = (await client.post("/v1/recommendations/embeddings/compute", json={})).json()
    assert again["processed_count"] == 0 and again["skipped_count"] == 4
    async with app.state.kernel.db.session() as session:
        row = await session.get(Embedding, ids["Ink Wash"])
        vector = np.frombuffer(row.vector, dtype="<f4")
        assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3  # float32 bytes, no pickle
    # Racing Cars becomes an ink painting: the index follows the update
    change = {"trained_words": ["ink wash", "sumi-e ink painting"], "tags": ["painting", "monochrome"]}
    await client.patch(f"/v1/adapters/{ids['Racing Cars']}", json=change)
    assert (await client.get(f"/v1/recommendations/embeddings/{ids['Racing Cars']}")).json()["needs_recomputation"]
    res = await _similar(client, ids["Ink Wash"])
    assert {r["lora_name"] for r in res["recommendations"][:2]} == {"Sumi Brush", "Racing Cars"}
    await client.delete(f"/v1/adapters/{ids['Sumi Brush']}")
    res = await _similar(client, ids["Ink Wash"])
    assert ids["Sumi Brush"] not in [r["lora_id"] for r in res["recommendations"]]
    before = res["recommendations"][0]["final_score"]
    for _ in range(2):
        fb = await client.post(
            "/v1/recommendations/feedback",
            json={"recommended_lora_id": res["recommendations"][0]["lora_id"], "feedback_type": "positive"},
        )
        assert fb.status_code == 201
    after = (await _similar(client, ids["Ink Wash"]))["recommendations"][0]["final_score"]
    assert after > before
    assert (await client.get("/v1/recommendations/stats")).json()["feedback_count"] == 2
    bad = await client.post(
        "/v1/recommendations/feedback", json={"recommended_lora_id": "nope", "feedback_type": "positive"}
    )
    assert bad.status_code == 404 and set(bad.json()) == {"type", "title", "status"}
