"""Asset listing filters (server side), tags and job listing over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import recording, register, register_indexed


async def test_asset_filters(client, tmp_path):
    short = await register_indexed(client, recording(tmp_path, "short.bag", plan=bf.RecordingPlan(duration_s=1.0)))
    long = await register_indexed(client, recording(tmp_path, "long.mcap", "mcap", bf.RecordingPlan(duration_s=3.0)))
    pending = await register(client, recording(tmp_path, "Pending.bag"))

    async def names(**params):
        r = await client.get("/assets", params=params)
        assert r.status_code == 200, r.text
        return [a["file_name"] for a in r.json()]

    assert await names() == ["Pending.bag", "long.mcap", "short.bag"]  # newest first
    assert await names(search="PENDING") == ["Pending.bag"]
    assert await names(type="MCAP") == ["long.mcap"]
    assert await names(status="indexed", type="bag") == ["short.bag"]
    assert await names(min_duration="2") == ["long.mcap"]  # unindexed assets never match a duration
    assert await names(max_duration="2", search="") == ["short.bag"]
    start = datetime.fromtimestamp(bf.START_NS / 1e9, UTC)
    assert await names(start_after=(start - timedelta(seconds=1)).isoformat()) == ["long.mcap", "short.bag"]
    assert await names(start_before=(start - timedelta(seconds=1)).isoformat()) == []
    size = long["file_size"]
    assert await names(min_size=str(size)) == [
        n
        for n in await names()
        if n == "long.mcap"
        or (n == "Pending.bag" and pending["file_size"] >= size)
        or (n == "short.bag" and short["file_size"] >= size)
    ]
    assert await names(registered_after=(datetime.now(UTC) + timedelta(hours=1)).isoformat()) == []
    assert await names(registered_before="2000-01-01") == []
    assert await names(limit="1", offset="1") == ["long.mcap"]
    assert await names(tag="unknown-tag") == []  # the reference answered 500
    for params, field in (
        ({"min_duration": "abc"}, "min_duration"),
        ({"start_after": "yesterday"}, "start_after"),
        ({"status": "done"}, "status"),
        ({"min_duration": "5", "max_duration": "1"}, "min_duration"),
        ({"min_size": "-1"}, "min_size"),
    ):
        r = await client.get("/assets", params=params)
        assert r.status_code == 422 and field in r.json()["detail"], (params, r.text)


async def test_tags(client, tmp_path):
    a = await register(client, recording(tmp_path, "a.bag"))
    b = await register(client, recording(tmp_path, "b.bag"))
    r = await client.post("/tags", json={"name": " Night Run "})
    assert r.status_code == 201 and r.json()["name"] == "Night Run" and r.json()["asset_count"] == 0
    tag = r.json()
    r = await client.post("/tags", json={"name": "night   run"})
    assert r.status_code == 409 and r.json() == {"detail": "tag already exists: night   run"}
    await client.post("/tags", json={"name": "Alpha"})
    assert [t["name"] for t in (await client.get("/tags")).json()] == ["Alpha", "Night Run"]

    r = await client.post(f"/assets/{a['id']}/tags", json={"tag_id": "NIGHT RUN"})
    assert r.status_code == 200 and [t["name"] for t in r.json()["tags"]] == ["Night Run"]
    r = await client.post(f"/assets/{a['id']}/tags", json={"tag_id": tag["id"]})
    assert r.status_code == 409 and r.json() == {"detail": "tag already attached to asset: Night Run -> a.bag"}
    await client.post(f"/assets/{b['id']}/tags", json={"tag_id": "night run"})
    r = await client.post(f"/assets/{a['id']}/tags", json={"tag_id": "ghost"})
    assert r.status_code == 404 and r.json() == {"detail": "tag not found: ghost"}
    counts = {t["name"]: t["asset_count"] for t in (await client.get("/tags")).json()}
    assert counts == {"Alpha": 0, "Night Run": 2}
    listed = (await client.get("/assets", params={"tag": "night run", "search": "a."})).json()
    assert [x["file_name"] for x in listed] == ["a.bag"] and listed[0]["tags"][0]["id"] == tag["id"]

    r = await client.delete(f"/assets/{a['id']}/tags/{tag['id']}")
    assert r.status_code == 200 and r.json()["tags"] == []
    r = await client.delete(f"/assets/{a['id']}/tags/{tag['id']}")
    assert r.status_code == 404 and r.json() == {"detail": "tag not attached to asset: Night Run -> a.bag"}
    await client.delete(f"/assets/{b['id']}/tags/night run")
    assert [t["name"] for t in (await client.get("/tags")).json()] == ["Alpha"]  # unused tag left the catalog


async def test_job_listing_filters(client, tmp_path):
    assert (await client.get("/jobs")).json() == []
    ok = await register_indexed(client, recording(tmp_path, "ok.bag"))
    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"nope")
    bad = await register(client, broken)
    assert (await client.post(f"/assets/{bad['id']}/index")).status_code == 422
    jobs = (await client.get("/jobs")).json()
    assert [j["target_asset_ids_json"] for j in jobs] == [[bad["id"]], [ok["id"]]]
    assert jobs[0]["status"] == "failed" and jobs[0]["representation_policy"] is None
    assert jobs[0]["output_path"] is None
    assert [j["status"] for j in (await client.get("/jobs", params={"status": "failed"})).json()] == ["failed"]
    assert len((await client.get("/jobs", params={"type": "index", "status": "succeeded"})).json()) == 1
    assert (await client.get("/jobs", params={"type": "convert"})).json() == []
    assert (await client.get(f"/jobs/{jobs[1]['id']}")).json() == jobs[1]
    assert (await client.get("/jobs", params={"type": "replay"})).status_code == 422
    assert (await client.get("/jobs", params={"status": "done"})).status_code == 422
    r = await client.get("/jobs/nope")
    assert r.status_code == 404 and r.json() == {"detail": "job not found: nope"}
    assert (await client.post("/jobs/nope/cancel")).status_code == 404
    retried = await client.post(f"/jobs/{jobs[0]['id']}/retry")  # still broken: fails again
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
