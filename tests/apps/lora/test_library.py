"""Adapter library: files read from safetensors headers, path refusals, CRUD, search, patch, bulk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.apps.lora.kit import configure, create, write_lora

PREFIXES = ["/v1", "/api/v1"]


def _envelope(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "title", "status"} and body["status"] == status
    return body["title"]


async def test_create_reads_header_and_sidecars(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    path = write_lora(
        lora_dir / "styles" / "inkwash_v2.safetensors",
        output_name="inkwash",
        tags={"10_inkwash": {"ink wash": 40, "monochrome": 12, "1girl": 3}, "5_x": {"monochrome": 30}},
    )
    (lora_dir / "styles" / "inkwash_v2.json").write_text(
        json.dumps({"activation text": "ink wash painting", "preferred weight": 0.8, "sd version": "SDXL"})
    )
    (lora_dir / "styles" / "inkwash_v2.civitai.info").write_text(
        json.dumps(
            {
                "name": "v2.0",
                "trainedWords": ["inkwash style"],
                "model": {"name": "Ink Wash", "tags": ["Style", "style", "ink"]},
            }
        )
    )
    (lora_dir / "styles" / "inkwash_v2.preview.png").write_bytes(b"\x89PNG\r\n")
    adapter = await create(client, path, "Ink Wash")
    assert adapter["alias"] == "inkwash" and adapter["file_stem"] == "inkwash_v2"
    assert adapter["sd_version"] == "SDXL" and adapter["base_model"] == "sdxl_base_v1-0"
    assert adapter["network_dim"] == 4 and adapter["network_alpha"] == 2.0
    assert adapter["trigger_candidates"][:2] == ["monochrome", "ink wash"]
    assert adapter["activation_text"] == "ink wash painting" and adapter["weight"] == 0.8
    assert adapter["trained_words"] == ["inkwash style"] and adapter["version"] == "v2.0"
    assert adapter["tags"] == ["Style", "ink"]  # de-duplicated case-insensitively
    assert adapter["primary_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    got = await client.get(f"/api/v1/adapters/{adapter['id']}")
    assert got.json()["adapter"]["id"] == adapter["id"]


@pytest.mark.parametrize("prefix", PREFIXES)
async def test_create_refusals(client, app, lora_dir: Path, tmp_path: Path, prefix: str) -> None:
    configure(app, lora_dir)
    outside = write_lora(tmp_path / "outside" / "x.safetensors")
    (lora_dir / "empty.safetensors").write_bytes(b"")
    (lora_dir / "junk.safetensors").write_bytes(os.urandom(64))
    (lora_dir / "model.ckpt").write_bytes(b"\x80\x04pickle")
    os.symlink(outside, lora_dir / "link.safetensors")
    (lora_dir / "long.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    cases = {
        str(outside): "outside",
        str(lora_dir / ".." / "outside" / "x.safetensors"): "outside",
        "../outside/x.safetensors": "outside",
        str(lora_dir / "link.safetensors"): "outside",
        str(lora_dir / "empty.safetensors"): "empty",
        str(lora_dir / "junk.safetensors"): "safetensors",
        str(lora_dir / "long.safetensors"): "safetensors",
        str(lora_dir / "model.ckpt"): ".safetensors",
        str(lora_dir / "missing.safetensors"): "does not exist",
        "/etc/passwd": "outside",
        "": "non-empty",
    }
    for file_path, words in cases.items():
        response = await client.post(f"{prefix}/adapters", json={"name": "x", "file_path": file_path})
        assert words in _envelope(response, 400), file_path
    assert (await client.get(f"{prefix}/adapters")).json()["total"] == 0
    title = _envelope(await client.post(f"{prefix}/adapters", json={"file_path": 3}), 400)
    assert "name" in title
    _envelope(await client.get(f"{prefix}/adapters/nope"), 404)


async def test_name_version_uniqueness_and_roots(client, app, lora_dir: Path, tmp_path: Path) -> None:
    extra_root = tmp_path / "more"
    configure(app, lora_dir, roots=[extra_root])
    a = write_lora(lora_dir / "a.safetensors")
    b = write_lora(extra_root / "b.safetensors")
    await create(client, a, "same")
    clash = await client.post("/v1/adapters", json={"name": "same", "file_path": str(b)})
    assert "already exists" in _envelope(clash, 400)
    await create(client, b, "same", version="2")
    await create(client, Path("a.safetensors"), "relative")  # relative to KILN_LORA_DIR


async def test_list_search_filter_sort_paginate(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    for i, (name, tags) in enumerate(
        [("Alpha", ["Anime"]), ("beta", ["anime", "Portrait"]), ("Gamma", ["landscape"]), ("delta_100%", [])]
    ):
        path = write_lora(lora_dir / f"f{i}.safetensors", rank=4 + 100 * i, output_name=f"alias{i}")
        await create(client, path, name, tags=tags, trained_words=["magic word"] if i == 2 else [])
    page = (await client.get("/v1/adapters", params={"per_page": 2})).json()
    assert [a["name"] for a in page["items"]] == ["Alpha", "beta"]
    assert (page["total"], page["filtered"], page["pages"], page["per_page"]) == (4, 4, 2, 2)
    tagged = (await client.get("/api/v1/adapters", params={"tags": "ANIME,nothing"})).json()
    assert {a["name"] for a in tagged["items"]} == {"Alpha", "beta"}
    assert tagged["filtered"] == 2 and tagged["total"] == 4

    async def names(search: str) -> list[str]:
        return [a["name"] for a in (await client.get("/v1/adapters", params={"search": search})).json()["items"]]

    assert await names("magic") == ["Gamma"]
    assert await names("alias3") == ["delta_100%"]
    assert (await client.get("/v1/adapters", params={"search": "%"})).json()["filtered"] == 1  # LIKE escaped
    by_size = (await client.get("/v1/adapters", params={"sort": "file_size"})).json()["items"]
    assert by_size[0]["name"] == "delta_100%"
    assert (await client.get("/v1/adapters", params={"page": 9})).json()["items"] == []
    capped = (await client.get("/v1/adapters", params={"per_page": 10**6})).json()
    assert capped["per_page"] == 500
    tags = (await client.get("/v1/adapters/tags")).json()["tags"]
    assert [t.casefold() for t in tags] == ["anime", "landscape", "portrait"]


async def test_patch_type_checked(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    adapter = await create(client, write_lora(lora_dir / "p.safetensors"), "p")
    url = f"/v1/adapters/{adapter['id']}"
    bad = [
        {"weight": True},
        {"weight": [1]},
        {"weight": "1"},
        {"weight": 11},
        {"active": 1},
        {"ordinal": 1.5},
        {"ordinal": True},
        {"tags": "x"},
        {"tags": [1]},
        {"nsfw_level": False},
        {"name": "x"},
        {},
        {"archetype_confidence": 2},
    ]
    for body in bad:
        _envelope(await client.patch(url, json=body), 400)
    for raw in ('{"weight": NaN}', '{"weight": Infinity}', '{"weight": -Infinity}'):
        # Not JSON (RFC 8259): refused as a malformed body (422) in the envelope, or as a bad weight (400).
        answer = await client.patch(url, content=raw, headers={"content-type": "application/json"})
        _envelope(answer, answer.status_code)
        assert answer.status_code in (400, 422)
    assert (await client.get(url)).json()["adapter"]["weight"] == 1.0
    ok = await client.patch(url, json={"weight": -0.5, "tags": ["A", "a", " b "], "ordinal": 3})
    assert ok.status_code == 200
    assert ok.json()["adapter"]["weight"] == -0.5 and ok.json()["adapter"]["tags"] == ["A", "b"]
    listed = (await client.get("/v1/adapters", params={"tags": "b"})).json()
    assert listed["filtered"] == 1

    async def found(term: str) -> int:
        return (await client.get("/v1/adapters", params={"search": term})).json()["filtered"]

    await client.patch(url, json={"trained_words": ["Zebra Stripes"]})
    assert await found("zebra") == 1 and await found("STRIPES zeb") == 1 and await found("ze") == 1
    await client.patch(url, json={"trained_words": ["giraffe"]})
    assert await found("zebra") == 0 and await found("giraffe") == 1
    await client.delete(url)
    assert await found("giraffe") == 0


async def test_activate_bulk_delete(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    ids = [(await create(client, write_lora(lora_dir / f"b{i}.safetensors"), f"b{i}"))["id"] for i in range(3)]
    act = (await client.post(f"/v1/adapters/{ids[0]}/activate", params={"ordinal": 5})).json()["adapter"]
    assert act["active"] and act["ordinal"] == 5
    _envelope(await client.post(f"/v1/adapters/{ids[0]}/activate", params={"ordinal": "x"}), 400)
    de = (await client.post(f"/api/v1/adapters/{ids[0]}/deactivate")).json()["adapter"]
    assert not de["active"] and de["ordinal"] == 5
    _envelope(await client.post("/v1/adapters/nope/activate"), 404)
    body = {"action": "activate", "lora_ids": [*ids[:2], "unknown", " "]}
    res = (await client.post("/v1/adapters/bulk", json=body)).json()
    assert res["processed"] == 2 and res["ids"] == ids[:2]
    assert (await client.get("/v1/adapters", params={"active_only": "true"})).json()["filtered"] == 2
    assert (await client.get("/v1/adapters", params={"active": "true"})).json()["filtered"] == 2
    _envelope(await client.post("/v1/adapters/bulk", json={"action": "explode", "lora_ids": ids}), 422)
    empty = (await client.post("/v1/adapters/bulk", json={"action": "delete", "lora_ids": []})).json()
    assert empty["processed"] == 0
    deleted = await client.post("/v1/adapters/bulk", json={"action": "delete", "lora_ids": ids[1:]})
    assert deleted.json()["processed"] == 2
    assert (await client.delete(f"/v1/adapters/{ids[0]}")).status_code == 204
    _envelope(await client.delete(f"/v1/adapters/{ids[0]}"), 404)
    assert (await client.get("/v1/adapters")).json()["total"] == 0


async def test_directory_scan_job(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    write_lora(lora_dir / "a" / "one.safetensors", output_name="shared")
    write_lora(lora_dir / "b" / "one.safetensors", output_name="shared", rank=8)
    dup = lora_dir / "a" / "copy.safetensors"
    dup.write_bytes((lora_dir / "a" / "one.safetensors").read_bytes())
    write_lora(lora_dir / "bad_tags.safetensors", tags="{not json")
    (lora_dir / "zero.safetensors").write_bytes(b"")
    (lora_dir / "noise.safetensors").write_bytes(os.urandom(100))
    (lora_dir / "c.ckpt").write_bytes(b"x")
    started = await client.post("/v1/adapters/scan", json={})
    assert started.status_code == 202
    job_id = started.json()["job_id"]
    status = await _wait_scan(client, job_id)
    result = status["result"]
    # Registered from the headers alone; the sha256 (and so the duplicate) comes from lora.hash.
    assert result["total_files"] == 6 and result["imported"] == 4 and result["invalid"] == 2
    assert result["to_hash"] == 4 and result["hash_job_id"]
    hashed = (await _wait_scan(client, result["hash_job_id"]))["result"]
    assert hashed["hashed"] == 3 and hashed["duplicates"] == 1 and hashed["removed"] == 1 and hashed["failed"] == 0
    (duplicate,) = hashed["duplicate_files"]
    # Path order: a/copy was registered first (as "shared"), a/one is its duplicate and is removed.
    assert duplicate["file"] == "a/one.safetensors" and duplicate["removed"] is True
    assert duplicate["sha256"] == hashlib.sha256(dup.read_bytes()).hexdigest()
    listed = (await client.get("/v1/adapters")).json()
    names = sorted(a["name"] for a in listed["items"])
    assert names == ["b/one", "bad_tags", "shared"]
    assert next(a for a in listed["items"] if a["name"] == "shared")["id"] == duplicate["duplicate_of"]
    for adapter in listed["items"]:
        assert adapter["primary_file_sha256"] == hashlib.sha256(Path(adapter["file_path"]).read_bytes()).hexdigest()
    bad = next(a for a in listed["items"] if a["name"] == "bad_tags")
    assert bad["trigger_candidates"] == []
    # The removed duplicate left the search index too (SQLite: FTS delete trigger).
    found = (await client.get("/v1/adapters", params={"search": "one.safetensors"})).json()
    assert sorted(a["name"] for a in found["items"]) == ["b/one"]
    again = await _wait_scan(client, (await client.post("/v1/adapters/scan", json={"directory": "."})).json()["job_id"])
    assert again["result"]["updated"] == 3 and again["result"]["imported"] == 0
    assert again["result"]["to_hash"] == 0 and again["result"]["hash_job_id"] is None  # unchanged: not re-hashed
    # The known copy is skipped and reported at once, without being registered or hashed again.
    assert again["result"]["duplicates"] == 1
    assert again["result"]["duplicate_files"] == [{k: duplicate[k] for k in ("file", "duplicate_of", "sha256")}]
    _envelope(await client.post("/v1/adapters/scan", json={"directory": "../.."}), 400)


async def _wait_scan(client, job_id: str) -> dict:
    for _ in range(200):
        status = (await client.get(f"/v1/adapters/scan/{job_id}")).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            assert status["status"] == "succeeded", status
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("scan did not finish")


async def test_api_key(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir, api_key="s3cret-key")
    _envelope(await client.get("/v1/adapters"), 403)
    _envelope(await client.get("/v1/adapters", headers={"X-API-Key": "wrong"}), 403)
    ok = await client.get("/api/v1/adapters", headers={"X-API-Key": "s3cret-key"})
    assert ok.status_code == 200 and "s3cret" not in ok.text


async def test_tag_pages_in_name_order(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    expected = []
    for i in range(12):
        tags = [["red"], ["blue"], ["red", "blue"], ["green"]][i % 4]
        name = f"{'zyxwvutsrqpo'[i]}-{i}"
        await create(client, write_lora(lora_dir / f"t{i}.safetensors"), name, tags=tags)
        if {"red", "blue"} & set(tags):
            expected.append(name)
    expected.sort()
    seen = []
    for page in (1, 2, 3):
        body = (await client.get("/v1/adapters", params={"tags": "RED,blue", "per_page": 4, "page": page})).json()
        assert body["filtered"] == 9
        seen += [a["name"] for a in body["items"]]
    assert seen == expected


def test_search_text_leaves_out_contained_parts() -> None:
    from types import SimpleNamespace

    from kiln.apps.lora.library.values import search_text

    adapter = SimpleNamespace(
        name="Ink",
        alias="ink",
        file_stem="ink",
        primary_file_name="ink.safetensors",
        version=None,
        tags=["Brush  Stroke", "ink", "stroke"],
        trained_words=["wash"],
        triggers=[],
    )
    # name, alias and stem sit inside the file name, "stroke" inside the tag: a third of the trigrams.
    assert search_text(adapter) == "ink.safetensors\nbrush stroke\nwash"


async def test_search_still_finds_every_part(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    write_lora(lora_dir / "inkwash.safetensors", output_name="inkwash")
    await create(client, lora_dir / "inkwash.safetensors", "Inkwash", tags=["sumi-e", "sumi"])
    for term in ("inkwash", "INKW", "safetensors", "sumi", "sumi-e", "ink sumi"):
        found = (await client.get("/v1/adapters", params={"search": term})).json()
        assert [a["name"] for a in found["items"]] == ["Inkwash"], term
