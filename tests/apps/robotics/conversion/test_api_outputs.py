"""Outputs over HTTP: listing and filters, detail, ranged content, missing-file refresh."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.apps.robotics.api_helpers import convert, outputs_of, recording, register, trigger_spec


async def _run(client, tmp_path, name="run.bag"):
    asset = await register(client, recording(tmp_path, name))
    return asset, await convert(client, {"asset_ids": [asset["id"]], "spec": trigger_spec()})


async def test_list_detail_filters(client, tmp_path):
    assert (await client.get("/outputs")).json() == []
    a1, run1 = await _run(client, tmp_path, "one.bag")
    a2, run2 = await _run(client, tmp_path, "two.bag")
    items = (await client.get("/outputs")).json()
    assert len(items) == 6 and {i["conversion_id"] for i in items[:3]} == {run2["id"]}
    dataset = next(i for i in items if i["role"] == "dataset" and i["conversion_id"] == run1["id"])
    assert set(dataset) == {
        "id",
        "conversion_id",
        "job_id",
        "asset_ids",
        "relative_path",
        "file_name",
        "format",
        "role",
        "media_type",
        "size_bytes",
        "availability_status",
        "metadata",
        "content_url",
        "created_at",
        "updated_at",
    }
    assert dataset["file_name"] == "episode_0001.parquet" and dataset["media_type"] == "application/x-parquet"
    assert dataset["job_id"] == run1["job_id"] and dataset["asset_ids"] == [a1["id"]]
    assert dataset["content_url"] == f"/outputs/{dataset['id']}/content"
    assert dataset["metadata"]["manifest"]["dataset"]["format"] == "parquet"
    report = next(i for i in items if i["role"] == "report" and i["conversion_id"] == run1["id"])
    assert report["format"] == "md" and report["media_type"] == "text/markdown"

    async def ids(**params):
        r = await client.get("/outputs", params=params)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()}

    assert await ids(asset_id=a1["id"]) == {i["id"] for i in items if i["conversion_id"] == run1["id"]}
    assert await ids(conversion_id=run2["id"], role="DATASET") == {
        i["id"] for i in items if i["conversion_id"] == run2["id"] and i["role"] == "dataset"
    }
    assert len(await ids(format="json")) == 2 and len(await ids(search="manifest")) == 2
    assert len(await ids(limit=2)) == 2 and len(await ids(limit=2, offset=5)) == 1
    assert (await client.get("/outputs", params={"limit": 0})).status_code == 422
    assert (await client.get("/outputs", params={"limit": "x"})).status_code == 422

    detail = (await client.get(f"/outputs/{dataset['id']}")).json()
    assert Path(detail["file_path"]).name == "episode_0001.parquet"
    assert {k: v for k, v in detail.items() if k != "file_path"} == dataset
    r = await client.get("/outputs/nope")
    assert r.status_code == 404 and r.json() == {"detail": "output artifact not found: nope"}


async def test_content_ranges(client, tmp_path):
    _asset, run = await _run(client, tmp_path)
    dataset = next(f for f in await outputs_of(client, run) if f["role"] == "dataset")
    path = Path((await client.get(f"/outputs/{dataset['id']}")).json()["file_path"])
    data = path.read_bytes()
    full = await client.get(dataset["content_url"])
    assert full.status_code == 200 and full.content == data and full.headers["accept-ranges"] == "bytes"
    assert "episode_0001.parquet" in full.headers["content-disposition"]
    part = await client.get(dataset["content_url"], headers={"Range": "bytes=4-15"})
    assert part.status_code == 206 and part.content == data[4:16]
    assert part.headers["content-range"] == f"bytes 4-15/{len(data)}"
    tail = await client.get(dataset["content_url"], headers={"Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == data[-4:] == b"PAR1"
    bad = await client.get(dataset["content_url"], headers={"Range": f"bytes={len(data) + 10}-"})
    assert bad.status_code == 416
    r = await client.get("/outputs/nope/content")
    assert r.status_code == 404


async def test_missing_file_refresh(client, tmp_path):
    _asset, run = await _run(client, tmp_path)
    dataset = next(f for f in await outputs_of(client, run) if f["role"] == "dataset")
    path = Path((await client.get(f"/outputs/{dataset['id']}")).json()["file_path"])
    before = (await client.get("/outputs")).json()
    assert (await client.get("/outputs")).json() == before  # reads do not rewrite rows

    saved = path.read_bytes()
    path.unlink()
    missing = (await client.get("/outputs", params={"availability": "missing"})).json()
    assert [m["id"] for m in missing] == [dataset["id"]]
    assert missing[0]["size_bytes"] == 0 and missing[0]["created_at"] == dataset["created_at"]
    r = await client.get(dataset["content_url"])
    assert r.status_code == 404 and r.json() == {"detail": f"output artifact content is unavailable: {dataset['id']}"}
    blockers = (await client.get("/dashboard/blockers")).json()
    assert blockers["missing_outputs"] == 1

    path.write_bytes(saved)  # the file comes back: ready again with its size
    back = (await client.get(f"/outputs/{dataset['id']}")).json()
    assert back["availability_status"] == "ready" and back["size_bytes"] == len(saved)
    (path.parent / "extra.jsonl").write_text("{}\n")  # a new file in the folder is listed at once
    extra = (await client.get("/outputs", params={"format": "jsonl"})).json()
    assert [(e["role"], e["media_type"]) for e in extra] == [("sidecar", "application/x-ndjson")]

    shutil.rmtree(path.parent)  # the whole run folder deleted: everything missing, nothing breaks
    items = (await client.get("/outputs")).json()
    assert {i["availability_status"] for i in items} == {"missing"} and len(items) == 4
    assert (await client.get("/dashboard/summary")).status_code == 200
    assert (await client.get(f"/conversions/{run['id']}")).status_code == 200
