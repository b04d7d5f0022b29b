"""Conversions over HTTP: legacy and inline-spec runs end to end, validation, cancel and retry."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq

from kiln.apps.robotics.conversion.tfrecord import decode_example, read_records
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import (
    SMALL,
    convert,
    outputs_of,
    recording,
    register,
    register_indexed,
    trigger_spec,
    wait_job,
)

CAM = SMALL.count("/camera/image_raw")
PARQUET_POLICY = {
    "policy_version": 1,
    "output_format": "parquet",
    "requested_image_payload_contract": None,
    "image_payload_contract": None,
    "payload_encoding": None,
    "null_encoding": None,
    "compatibility_markers": [],
    "warnings": [],
}


async def test_legacy_parquet_end_to_end(client, tmp_path, settings):
    asset = await register_indexed(client, recording(tmp_path))
    body = {
        "asset_ids": [asset["id"]],
        "mapping": {"odom": ["/odom"]},
        "output": {"format": "parquet", "compression": "snappy"},
        "resample": {"freq_hz": 5, "method": "downsample"},
    }
    r = await client.post("/conversions", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] in ("queued", "running") and created["output_files"] == []
    assert created["job"]["type"] == "convert" and created["job"]["id"] == created["job_id"]
    cfg = created["config"]
    assert cfg["mapping"] == {"odom": ["/odom"]} and cfg["mapping_mode"] == "custom"
    assert cfg["output"]["compression"] == "snappy" and cfg["resample"] == {"freq_hz": 5.0, "method": "downsample"}
    assert cfg["write_manifest"] is True and cfg["spec"]["schema"] == {"name": "legacy_mapping", "version": 1}
    assert created["representation_policy"] == PARQUET_POLICY
    out_dir = Path(created["output_path"])
    assert out_dir == (settings.home / "robotics" / "outputs" / created["id"]).resolve()

    job = await wait_job(client, created["job_id"])
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    assert job["output_path"] == str(out_dir) and job["representation_policy"]["output_format"] == "parquet"
    detail = (await client.get(f"/conversions/{created['id']}")).json()
    assert detail["status"] == "succeeded" and detail["error_message"] is None
    files = await outputs_of(client, detail)
    roles = sorted(f["role"] for f in files)
    assert roles == ["dataset", "manifest", "report"]
    dataset = next(f for f in await outputs_of(client, detail) if f["role"] == "dataset")
    assert dataset["format"] == "parquet" and dataset["asset_ids"] == [asset["id"]]
    content = await client.get(dataset["content_url"])
    assert content.status_code == 200 and content.headers["content-type"] == "application/x-parquet"
    table = pq.read_table(io.BytesIO(content.content)).to_pydict()
    assert len(table["odom"]) == 5  # 1 s at 5 Hz
    xs = [v["pose"]["pose"]["position"]["x"] for v in table["odom"]]  # a typed struct per message
    assert xs == sorted(xs) and xs[-1] == bf.odom_x(SMALL.count("/odom") - 1)

    listed = (await client.get("/conversions")).json()
    assert [c["id"] for c in listed] == [created["id"]]
    assert {k: v for k, v in listed[0].items() if k not in ("updated_at", "progress", "status")} == {
        k: v for k, v in detail.items() if k not in ("updated_at", "progress", "status", "output_files", "job")
    }
    asset_detail = (await client.get(f"/assets/{asset['id']}")).json()
    assert [j["type"] for j in asset_detail["related_jobs"]] == ["convert", "index"]
    assert asset_detail["conversions"][0]["id"] == created["id"]


async def test_inline_spec_tfrecord_runs_without_indexing(client, tmp_path):
    asset = await register(client, recording(tmp_path, "r.mcap", "mcap"))  # not indexed: inline specs need none
    detail = await convert(client, {"asset_ids": [asset["id"]], "spec": trigger_spec("tfrecord", compression="gzip")})
    assert detail["config"]["mapping_mode"] == "spec"
    assert detail["representation_policy"] == {
        "policy_version": 1,
        "output_format": "tfrecord",
        "requested_image_payload_contract": None,
        "image_payload_contract": "bytes_v2",
        "payload_encoding": "typed_features",
        "null_encoding": "presence_flag",
        "compatibility_markers": [],
        "warnings": [],
    }
    dataset = next(f for f in await outputs_of(client, detail) if f["role"] == "dataset")
    path = (await client.get(f"/outputs/{dataset['id']}")).json()["file_path"]
    examples = [decode_example(r) for r in read_records(path)]
    assert len(examples) == CAM - 1  # the first frame has no IMU sample before it
    assert examples[0]["image"] == [bytes([bf.image_fill(1)]) * (8 * 6 * 3)]
    manifest = next(f for f in await outputs_of(client, detail) if f["role"] == "manifest")
    assert manifest["metadata"]["manifest"]["dataset"]["rows_written"] == CAM - 1


async def test_legacy_image_contract_and_list_filters(client, tmp_path):
    asset = await register_indexed(client, recording(tmp_path))
    legacy = await convert(
        client,
        {
            "asset_ids": [asset["id"]],
            "mapping": {"imu": ["/imu"]},
            "output": {"format": "tfrecord", "image_payload_contract": "legacy_list_v1"},
        },
    )
    policy = legacy["representation_policy"]
    assert policy["image_payload_contract"] == "legacy_list_v1"
    assert policy["requested_image_payload_contract"] == "legacy_list_v1"
    assert policy["compatibility_markers"] == ["legacy_list_image_payload"]
    assert policy["warnings"] == ["legacy image payload contract is enabled; image data will remain list-based"]
    assert legacy["job"]["representation_policy"]["effective_image_payload_contract"] == "legacy_list_v1"
    auto = await convert(client, {"asset_ids": [asset["id"]], "output": {"format": "tfrecord"}})
    assert auto["config"]["mapping_mode"] == "auto"
    assert auto["config"]["mapping"]["camera_image_raw"] == ["/camera/image_raw"]

    ids = lambda r: [c["id"] for c in r.json()]  # noqa: E731
    assert ids(await client.get("/conversions")) == [auto["id"], legacy["id"]]
    assert ids(await client.get("/conversions", params={"legacy_compatible": "true"})) == [legacy["id"]]
    assert ids(await client.get("/conversions", params={"legacy_compatible": "false"})) == [auto["id"]]
    assert ids(await client.get("/conversions", params={"image_payload_contract": "bytes_v2"})) == [auto["id"]]
    r = await client.get("/conversions", params={"image_payload_contract": "png"})
    assert r.status_code == 422


async def test_validation_errors(client, tmp_path):
    bag = recording(tmp_path)
    pending = await register(client, bag)
    r = await client.post("/conversions", json={"asset_ids": [pending["id"]]})
    assert r.status_code == 422 and r.json() == {"detail": "asset must be indexed before conversion: run.bag"}
    r = await client.post("/conversions", json={"asset_ids": ["nope"], "spec": trigger_spec()})
    assert r.status_code == 422 and r.json() == {"detail": "asset not found: nope"}
    await client.post(f"/assets/{pending['id']}/index")
    aid = pending["id"]
    r = await client.post(
        "/conversions", json={"asset_ids": [aid], "output": {"format": "tfrecord", "compression": "snappy"}}
    )
    assert r.status_code == 422 and "invalid tfrecord compression" in r.json()["detail"][0]["msg"]
    r = await client.post(
        "/conversions",
        json={"asset_ids": [aid], "output": {"format": "parquet", "image_payload_contract": "legacy_list_v1"}},
    )
    assert r.status_code == 422
    assert r.json() == {"detail": "image payload contract can only be customized for tfrecord output"}
    r = await client.post("/conversions", json={"asset_ids": [aid], "mapping": {"x": ["/nope"]}})
    assert r.status_code == 422 and "/nope" in r.json()["detail"]
    r = await client.post("/conversions", json={"asset_ids": [aid], "saved_config_id": "ghost"})
    assert r.status_code == 422 and r.json() == {"detail": "saved conversion config not found: ghost"}
    r = await client.post("/conversions", json={"asset_ids": [aid], "saved_config_id": "x", "spec": trigger_spec()})
    assert r.status_code == 422
    r = await client.post("/conversions", json={"asset_ids": [aid, aid], "spec": trigger_spec()})
    assert r.status_code == 422
    r = await client.post("/conversions", json={"asset_ids": [aid], "spec": {"row_strategy": {"kind": "bogus"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "spec", "row_strategy"]
    r = await client.get("/conversions/nope")
    assert r.status_code == 404 and r.json() == {"detail": "conversion not found: nope"}


async def test_failed_conversion_is_reported(client, tmp_path):
    asset = await register(client, recording(tmp_path))
    spec = trigger_spec()
    spec["row_strategy"]["trigger_topic"] = "/does/not/exist"
    detail = await convert(client, {"asset_ids": [asset["id"]], "spec": spec}, status="failed")
    assert detail["status"] == "failed" and detail["error_message"].startswith("conversion failed")
    assert detail["job"]["error_message"] == detail["error_message"]
    assert (await client.get("/dashboard/summary")).json()["conversions"]["status_counts"]["failed"] == 1


async def test_cancel_then_retry(client, tmp_path):
    plan = bf.RecordingPlan(duration_s=60.0, image_size=(160, 120))  # long enough to cancel mid-run
    asset = await register(client, recording(tmp_path, "long.mcap", "mcap", plan))
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec()})
    run = r.json()
    running = await wait_job(client, run["job_id"], {"running", "succeeded", "failed"})
    assert running["status"] == "running", running  # cancel while it works, not while it waits
    cancel = await client.post(f"/jobs/{run['job_id']}/cancel")
    assert cancel.status_code == 200 and cancel.json()["cancel_requested_at"], cancel.text
    job = await wait_job(client, run["job_id"])
    assert job["status"] == "cancelled"
    assert (await client.get(f"/conversions/{run['id']}")).json()["status"] == "cancelled"
    assert (await client.post(f"/jobs/{run['job_id']}/cancel")).status_code == 409

    retried = await client.post(f"/jobs/{run['job_id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    job = await wait_job(client, run["job_id"], timeout=120)
    assert job["status"] == "succeeded" and job["attempts"] >= 1
    detail = (await client.get(f"/conversions/{run['id']}")).json()
    dataset = next(f for f in await outputs_of(client, detail) if f["role"] == "dataset")
    assert dataset["availability_status"] == "ready" and dataset["size_bytes"] > 0
    assert (await client.post(f"/jobs/{run['job_id']}/retry")).status_code == 409
