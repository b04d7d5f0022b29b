"""Prompt composition: order, names SDNext resolves, trigger words, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.apps.lora.compose.service import format_weight
from tests.apps.lora.kit import configure, create, write_lora


def test_weight_format() -> None:
    weights = (1.0, 0.75, 0.5, -0.25, 0.0, 1.2345)
    assert [format_weight(w) for w in weights] == ["1", "0.75", "0.5", "-0.25", "0", "1.234"]


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_compose(client, app, lora_dir: Path, prefix: str) -> None:
    configure(app, lora_dir)
    empty = (await client.post(f"{prefix}/compose", json={})).json()
    assert empty["tokens"] == [] and "No active adapters" in empty["warnings"][0] and empty["delivery"] is None
    a = await create(
        client,
        write_lora(lora_dir / "x" / "ink_v2.safetensors", output_name="inkwash"),
        "Display Ink",
        trained_words=["ink style"],
        triggers=["Ink Style", "brush"],
        weight=0.5,
    )
    b = await create(client, write_lora(lora_dir / "beta.safetensors", base="sd_v1"), "Beta", weight=1.0)
    c = await create(client, write_lora(lora_dir / "y" / "ink_v2.safetensors", output_name="other"), "Dup stem")
    await client.post(f"{prefix}/adapters/{a['id']}/activate", params={"ordinal": 2})
    await client.post(f"{prefix}/adapters/{b['id']}/activate", params={"ordinal": 1})
    body = (await client.post(f"{prefix}/compose", json={"prefix": " start ", "suffix": "end "})).json()
    # b first (ordinal 1); a's stem is shared by another file so its unique alias is used
    assert body["tokens"] == ["<lora:beta:1>", "<lora:inkwash:0.5>"]
    assert body["prompt"] == "start <lora:beta:1> <lora:inkwash:0.5>, ink style, brush end"
    assert any("mix base models" in w for w in body["warnings"])
    plain = (await client.post(f"{prefix}/compose", json={"include_trigger_words": False})).json()
    assert plain["prompt"] == "<lora:beta:1> <lora:inkwash:0.5>"
    await client.post(f"{prefix}/adapters/{c['id']}/activate", params={"ordinal": 3})
    (lora_dir / "beta.safetensors").unlink()
    warned = (await client.post(f"{prefix}/compose", json={})).json()
    assert "<lora:other:1>" in warned["tokens"]  # c: shared stem, its unique alias is used
    assert any("missing" in w and "Beta" in w for w in warned["warnings"])


async def test_alias_clash_warns(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    for i in range(2):
        adapter = await create(client, write_lora(lora_dir / f"s{i}.safetensors", output_name="same"), f"n{i}")
        await client.post(f"/v1/adapters/{adapter['id']}/activate")
    body = (await client.post("/v1/compose", json={})).json()
    assert body["tokens"] == ["<lora:s0:1>", "<lora:s1:1>"]
    assert any("clashing aliases" in w for w in body["warnings"])


async def test_compose_delivery_cli_and_unconfigured_sdnext(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    a = await create(client, write_lora(lora_dir / "a.safetensors"), "a")
    await client.post(f"/v1/adapters/{a['id']}/activate")
    body = {"delivery": {"mode": "cli", "cli": {"template": "PROMPT: {prompt}"}}}
    res = (await client.post("/v1/compose", json=body)).json()
    assert res["delivery"]["status"] == "pending"
    delivery = await _wait_delivery(client, res["delivery"]["id"])
    assert delivery["status"] == "succeeded"
    key = delivery["result"]["blob_key"]
    assert (await app.state.kernel.blobs.read_bytes(key)).decode() == "PROMPT: <lora:a:1>"
    sd = {"delivery": {"mode": "sdnext", "sdnext": {"generation_params": {"prompt": "x"}}}}
    refused = await client.post("/v1/compose", json=sd)
    assert refused.status_code == 400 and "not configured" in refused.json()["title"]
    http = await client.post("/v1/compose", json={"delivery": {"mode": "http", "http": {"host": "169.254.169.254"}}})
    assert http.status_code == 400 and "KILN_LORA_DELIVERY_HOSTS" in http.json()["title"]
    created = await client.post("/v1/deliveries", json={"prompt": "p", "mode": "cli"})
    assert created.status_code == 201
    got = await _wait_delivery(client, created.json()["delivery_id"])
    assert got["prompt"] == "p" and got["mode"] == "cli"
    assert (await client.get("/v1/deliveries/nope")).json()["title"] == "delivery not found"
    assert json.loads(json.dumps(got))


async def _wait_delivery(client, delivery_id: str) -> dict:
    import asyncio

    for _ in range(200):
        got = (await client.get(f"/v1/deliveries/{delivery_id}")).json()["delivery"]
        if got["status"] in ("succeeded", "failed", "cancelled"):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError("delivery did not finish")
