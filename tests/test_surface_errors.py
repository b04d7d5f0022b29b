"""Refusals the fuzzer found across surfaces, each in the surface's own envelope (never a 500)."""

from __future__ import annotations

import pytest

BROKEN_UTF8 = b"\xe7\xa4S\x03"


@pytest.mark.parametrize("path", ["/v1/compose", "/api/v1/deliveries", "/v1/recommendations/feedback"])
async def test_lora_body_that_is_not_utf8_is_a_4xx_envelope(client, path):
    answer = await client.post(path, content=BROKEN_UTF8, headers={"content-type": "application/json"})
    assert 400 <= answer.status_code < 500
    body = answer.json()
    assert body["status"] == answer.status_code and body["title"] and "type" in body


async def test_arted_body_that_is_not_utf8_is_a_4xx_envelope(client):
    answer = await client.post(
        "/api/schema/pipeline/execute", content=BROKEN_UTF8, headers={"content-type": "application/json"}
    )
    assert 400 <= answer.status_code < 500
    assert set(answer.json()) >= {"error", "status"}


@pytest.mark.parametrize("path", ["/v1/generation/results", "/api/v1/generation/results"])
async def test_lora_offsets_past_64_bits_are_refused(client, path):
    answer = await client.get(path, params={"offset": str(2**84), "limit": 5})
    assert answer.status_code == 422
    assert answer.json()["status"] == 422


async def test_robotics_draft_with_null_or_odd_topic_lists_is_not_a_500(client):
    for join_topics in (None, "a", [1, 2], [[]]):
        body = {"asset_id": "x", "draft_request": {"join_topics": join_topics, "selected_topics": None}}
        answer = await client.post("/conversions/draft", json=body)
        assert answer.status_code < 500, (join_topics, answer.text)
