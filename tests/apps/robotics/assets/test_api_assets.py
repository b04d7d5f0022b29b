"""Assets over HTTP: register, upload, dialog, scan, index, reindex, detail."""

from __future__ import annotations

from pathlib import Path

import pytest

import kiln.apps.robotics.assets.dialog as dialog
from tests.apps.robotics.api_helpers import SMALL, recording, register, register_indexed


async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_register_shapes_and_errors(client, tmp_path):
    bag = recording(tmp_path)
    asset = await register(client, bag)
    assert set(asset) == {
        "id",
        "file_path",
        "file_name",
        "file_type",
        "file_size",
        "registered_time",
        "indexing_status",
        "last_indexed_time",
    }
    assert asset["file_path"] == str(bag.resolve()) and asset["file_type"] == "bag"
    assert asset["file_size"] == bag.stat().st_size and asset["indexing_status"] == "pending"
    assert asset["registered_time"].endswith("Z") and asset["last_indexed_time"] is None

    r = await client.post("/assets/register", json={"file_path": f"  {bag}  "})
    assert r.status_code == 409 and r.json() == {"detail": f"asset already registered: {bag.resolve()}"}
    missing = tmp_path / "nope.bag"
    r = await client.post("/assets/register", json={"file_path": str(missing)})
    assert r.status_code == 400 and r.json() == {"detail": f"asset path does not exist: {missing}"}
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    r = await client.post("/assets/register", json={"file_path": str(txt)})
    assert r.status_code == 400 and r.json()["detail"].startswith("unsupported asset type: notes.txt")
    r = await client.post("/assets/register", json={"file_path": "   "})
    assert r.status_code == 422
    r = await client.post("/assets/register", json={"file_path": str(bag), "extra": 1})
    assert r.status_code == 422


async def test_db3_and_rosbag2_directories_are_accepted(client, tmp_path):
    db3 = recording(tmp_path, "a", "db3")
    folder = recording(tmp_path, "b", "dir-mcap")
    one = await register(client, db3)
    two = await register(client, folder)
    assert one["file_type"] == "db3" and two["file_type"] == "rosbag2"
    assert two["file_size"] > 0
    r = await client.post(f"/assets/{two['id']}/index")
    assert r.status_code == 200, r.text
    meta = r.json()["metadata"]
    assert meta["topic_count"] == 5 and meta["raw_metadata"]["ros_version"] == "ROS2"


async def test_upload_streams_to_home_and_refuses_bad_input(client, tmp_path, settings):
    data = recording(tmp_path).read_bytes()
    r = await client.post("/assets/upload", content=data, headers={"X-File-Name": "../../evil/run.bag"})
    assert r.status_code == 201, r.text
    asset = r.json()
    stored = Path(asset["file_path"])
    assert stored.read_bytes() == data and stored.name == "run.bag"
    assert stored.is_relative_to((settings.home / "robotics" / "uploads").resolve())
    assert asset["file_size"] == len(data)

    r = await client.post("/assets/upload", content=data, headers={"X-File-Name": "run.bag"})
    assert r.status_code == 409 and r.json()["detail"] == f"asset already registered: {stored}"
    other = await client.post("/assets/upload", content=data + b"\0", headers={"X-File-Name": "run.bag"})
    assert other.status_code == 201  # same name, other content: its own folder, no collision
    r = await client.post("/assets/upload", content=b"x")
    assert r.status_code == 400 and r.json() == {"detail": "x-file-name header is required for asset uploads"}
    r = await client.post("/assets/upload", content=b"x", headers={"X-File-Name": "notes.txt"})
    assert r.status_code == 400 and r.json()["detail"].startswith("unsupported asset type: notes.txt")
    r = await client.post("/assets/upload", content=b"", headers={"X-File-Name": "e.mcap"})
    assert r.status_code == 400 and r.json() == {"detail": "uploaded file is empty"}
    leftovers = [p for p in (settings.home / "robotics" / "uploads").rglob("*") if p.is_file()]
    assert len(leftovers) == 2  # refused uploads leave nothing behind


async def test_register_dialog(client, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = await client.post("/assets/register-dialog")
    assert r.status_code == 503 and "no display available" in r.json()["detail"]

    bag = recording(tmp_path)
    await register(client, bag)
    fresh = recording(tmp_path, "fresh.mcap", "mcap")

    async def picks(chosen):
        return chosen

    # the real dialog under Xvfb is in test_dialog_display.py; here: what is done with a pick
    monkeypatch.setattr(dialog, "pick_files", lambda: picks([str(fresh), str(bag), str(tmp_path / "gone.bag")]))
    r = await client.post("/assets/register-dialog")
    body = r.json()
    assert r.status_code == 200 and body["canceled"] is False
    assert [a["file_name"] for a in body["registered_assets"]] == ["fresh.mcap"]
    assert [(s["reason"], s["file_path"]) for s in body["skipped"]] == [
        ("duplicate", str(bag)),
        ("invalid_path", str(tmp_path / "gone.bag")),
    ]
    assert body["skipped"][0]["detail"] == f"asset already registered: {bag.resolve()}"
    monkeypatch.setattr(dialog, "pick_files", lambda: picks(None))
    r = await client.post("/assets/register-dialog")
    assert r.json() == {"canceled": True, "registered_assets": [], "skipped": []}


async def test_scan_directory(client, tmp_path):
    root = tmp_path / "scan"
    recording(root, "top.bag")
    recording(root / "sub", "deep.mcap", "mcap")
    recording(root / "sub", "r2", "dir-db3")
    (root / "sub" / "readme.txt").write_text("ignored")
    r = await client.post("/assets/scan-directory", json={"directory_path": str(root), "recursive": False})
    body = r.json()
    assert r.status_code == 200 and body["discovered_file_count"] == 1 and body["recursive"] is False
    assert body["scanned_directory"] == str(root.resolve())
    r = await client.post("/assets/scan-directory", json={"directory_path": str(root)})
    body = r.json()
    assert body["recursive"] is True and body["discovered_file_count"] == 3
    assert sorted(a["file_name"] for a in body["registered_assets"]) == ["deep.mcap", "r2"]
    assert [s["reason"] for s in body["skipped"]] == ["duplicate"]
    r = await client.post("/assets/scan-directory", json={"directory_path": str(tmp_path / "missing")})
    assert r.status_code == 400 and r.json() == {"detail": f"asset directory does not exist: {tmp_path / 'missing'}"}
    r = await client.post("/assets/scan-directory", json={"directory_path": str(root / "top.bag")})
    assert r.status_code == 400 and r.json()["detail"].startswith("asset directory is not a directory")


async def test_index_success_failure_and_detail(client, tmp_path):
    asset = await register_indexed(client, recording(tmp_path))
    r = await client.get(f"/assets/{asset['id']}")
    detail = r.json()
    assert set(detail) == {"asset", "metadata", "tags", "related_jobs", "conversions"}
    meta = detail["metadata"]
    assert meta["topic_count"] == 5 and meta["message_count"] == sum(SMALL.count(p.topic) for p in SMALL.topics)
    assert meta["default_episode"] == {
        "episode_id": f"{asset['id']}:default",
        "label": "Episode 1",
        "duration": meta["duration"],
    }
    assert meta["start_time"].endswith("Z") and meta["indexing_error"] is None
    assert {"camera", "imu"} <= set(meta["sensor_types"])
    imu = next(t for t in meta["topics"] if t["name"] == "/imu")
    assert imu == {
        "name": "/imu",
        "message_type": "sensor_msgs/msg/Imu",
        "message_count": 100,
        "rate_hz": pytest.approx(100.0, rel=0.01),
        "modality": "scalar_series",
    }
    [job] = detail["related_jobs"]
    assert job["type"] == "index" and job["status"] == "succeeded"
    assert job["config_json"] == {"execution": "background", "trigger": "index_asset"}
    assert job["target_asset_ids_json"] == [asset["id"]] and job["started_at"] and job["finished_at"]
    assert detail["asset"]["last_indexed_time"] is not None

    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"this is not a bag at all")
    bad = await register(client, broken)
    r = await client.post(f"/assets/{bad['id']}/index")
    assert r.status_code == 422 and r.json()["detail"]
    detail = (await client.get(f"/assets/{bad['id']}")).json()
    assert detail["asset"]["indexing_status"] == "failed"
    assert detail["metadata"]["indexing_error"] == r.json()["detail"] and detail["metadata"]["topic_count"] == 0
    assert detail["related_jobs"][0]["status"] == "failed"
    assert detail["related_jobs"][0]["error_message"] == r.json()["detail"]

    r = await client.post("/assets/nope/index")
    assert r.status_code == 404 and r.json() == {"detail": "asset not found: nope"}
    r = await client.get("/assets/nope")
    assert r.status_code == 404 and r.json() == {"detail": "asset not found: nope"}


async def test_reindex_all(client, tmp_path):
    done = await register_indexed(client, recording(tmp_path, "done.bag"))
    pending = await register(client, recording(tmp_path, "p.mcap", "mcap"))
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"garbage")
    bad = await register(client, broken)
    r = await client.post("/assets/reindex-all")
    body = r.json()
    assert r.status_code == 200 and body["total_requested"] == 2
    assert [a["id"] for a in body["indexed_assets"]] == [pending["id"]]
    assert [a["id"] for a in body["failed_assets"]] == [bad["id"]]
    assert body["indexed_assets"][0]["indexing_status"] == "indexed"
    jobs = (await client.get("/jobs", params={"type": "index"})).json()
    assert sum(j["config_json"]["trigger"] == "reindex_all" for j in jobs) == 2
    assert done["id"] not in {a["id"] for a in body["indexed_assets"]}


async def test_surface_needs_a_token_off_loopback(tmp_path, db_url):
    import httpx
    from asgi_lifespan import LifespanManager

    from kiln.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path / "home", db_url, host="0.0.0.0"), migrate=False)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            assert (await http.get("/assets")).status_code == 401
            assert (await http.get("/dashboard/summary")).status_code == 401
