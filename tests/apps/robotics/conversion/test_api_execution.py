"""Execution modes (KILN_ROBOTICS_EXECUTION) and multi-recording conversions over HTTP."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from kiln.apps.robotics.config import RoboticsSettings, set_robotics_settings
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import SMALL, convert, outputs_of, recording, register, trigger_spec, wait_job

CAM = SMALL.count("/camera/image_raw") - 1  # the first frame has no IMU sample before it: dropped


def use_mode(app, execution: str) -> None:
    set_robotics_settings(app.state.kernel, RoboticsSettings(_env_file=None, execution=execution))


def test_execution_setting_comes_from_the_environment(monkeypatch):
    assert RoboticsSettings(_env_file=None).execution == "background"
    monkeypatch.setenv("KILN_ROBOTICS_EXECUTION", "inline")
    monkeypatch.setenv("KILN_ROBOTICS_CONVERSION_WORKERS", "3")
    cfg = RoboticsSettings(_env_file=None)
    assert cfg.execution == "inline" and cfg.conversion_workers == 3
    assert cfg.wait_seconds(5) == cfg.inline_timeout_seconds
    monkeypatch.setenv("KILN_ROBOTICS_EXECUTION", "eventually")
    with pytest.raises(ValidationError):
        RoboticsSettings(_env_file=None)


async def test_background_answers_queued(client, app, tmp_path):
    use_mode(app, "background")
    asset = await register(client, recording(tmp_path))
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec()})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "queued" and body["output_files"] == [] and body["job"]["status"] == "queued"
    assert body["job"]["config_json"]["execution"] == "background"
    assert (await wait_job(client, body["job_id"]))["status"] == "succeeded"


async def test_inline_conversion_finishes_inside_the_post(client, app, tmp_path):
    use_mode(app, "inline")
    asset = await register(client, recording(tmp_path))
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec()})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["job"]["status"] == "succeeded"
    assert body["job"]["config_json"]["execution"] == "inline"
    files = await outputs_of(client, body)
    assert sorted(f["role"] for f in files) == ["dataset", "manifest", "report"]
    dataset = next(f for f in files if f["role"] == "dataset")
    content = await client.get(dataset["content_url"])
    assert pq.read_table(io.BytesIO(content.content)).num_rows == CAM


async def test_inline_failure_is_a_422_and_the_failed_run_stays(client, app, tmp_path):
    use_mode(app, "inline")
    asset = await register(client, recording(tmp_path))
    spec = trigger_spec()
    spec["row_strategy"]["trigger_topic"] = "/does/not/exist"
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": spec})
    assert r.status_code == 422
    assert r.json() == {"detail": "conversion failed: trigger topic not found in recording: /does/not/exist"}
    [run] = (await client.get("/conversions")).json()
    assert run["status"] == "failed" and run["error_message"] == r.json()["detail"]
    [job] = (await client.get("/jobs", params={"type": "convert", "status": "failed"})).json()
    assert job["id"] == run["job_id"] and job["config_json"]["execution"] == "inline"
    assert (await client.get(f"/conversions/{run['id']}")).json()["output_files"] == []


async def test_inline_indexing_records_its_mode(client, app, tmp_path):
    use_mode(app, "inline")
    asset = await register(client, recording(tmp_path))
    r = await client.post(f"/assets/{asset['id']}/index")
    assert r.status_code == 200 and r.json()["asset"]["indexing_status"] == "indexed"
    assert r.json()["related_jobs"][0]["config_json"] == {"execution": "inline", "trigger": "index_asset"}
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"\x89MCAP0\r\n but nothing after the magic")
    bad = await register(client, broken)
    r = await client.post(f"/assets/{bad['id']}/index")
    assert r.status_code == 422 and r.json()["detail"]
    [failed] = (await client.get("/jobs", params={"type": "index", "status": "failed"})).json()
    assert failed["error_message"] == r.json()["detail"] and failed["config_json"]["execution"] == "inline"


async def test_multi_recording_outputs_are_attributed_per_asset(client, tmp_path):
    long_plan = bf.RecordingPlan(duration_s=2.0)
    a = await register(client, recording(tmp_path / "a", "first.bag", "bag"))
    b = await register(client, recording(tmp_path / "b", "second.mcap", "mcap-zstd", long_plan))
    detail = await convert(client, {"asset_ids": [a["id"], b["id"]], "spec": trigger_spec()})
    assert detail["asset_ids"] == [a["id"], b["id"]]
    files = await outputs_of(client, detail)
    assert sorted(f["file_name"] for f in files) == sorted(
        f"episode_000{i}.{ext}" for i in (1, 2) for ext in ("parquet", "manifest.json", "report.md")
    )
    owner = {f["file_name"]: f["asset_ids"] for f in files}
    assert all(owner[n] == [a["id"]] for n in owner if n.startswith("episode_0001"))
    assert all(owner[n] == [b["id"]] for n in owner if n.startswith("episode_0002"))

    rows = {}
    for asset, episode in ((a, "episode_0001"), (b, "episode_0002")):
        listed = (await client.get("/outputs", params={"asset_id": asset["id"]})).json()
        assert sorted(o["file_name"] for o in listed) == sorted(
            f"{episode}.{ext}" for ext in ("parquet", "manifest.json", "report.md")
        )
        dataset = next(o for o in listed if o["role"] == "dataset")
        assert dataset["metadata"]["manifest"]["source"]["path"].endswith("first.bag" if asset is a else "second.mcap")
        content = await client.get(dataset["content_url"])
        rows[episode] = pq.read_table(io.BytesIO(content.content)).num_rows
    assert rows == {"episode_0001": CAM, "episode_0002": long_plan.count("/camera/image_raw") - 1}
