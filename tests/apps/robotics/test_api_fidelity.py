"""What the hephaes frontend and hephaes' own JSON need: shapes, nulls, raw images, failures."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from kiln.apps.robotics.conversion.tfrecord import decode_example, read_records
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import (
    convert,
    outputs_of,
    recording,
    register,
    register_indexed,
    trigger_spec,
    wait_job,
)

RAW_BGRA = "custom_msgs/msg/RawImageBGRA"
RAW_BGRA_DEF = "std_msgs/Header header\nuint32 height\nuint32 width\nuint8[] data\n"
FRAMES = 16


def _bgra(i: int) -> np.ndarray:
    """A 3x4 BGRA frame whose pixels depend on the frame number."""
    img = np.zeros((3, 4, 4), np.uint8)
    img[..., 0], img[..., 1], img[..., 2], img[..., 3] = i, 2 * i, 3 * i, 255  # B, G, R, A
    return img


def write_raw_bgra_mcap(path: Path) -> Path:
    """An MCAP with a custom raw image type (no `encoding` field) and a joystick, like a game log."""
    from mcap.writer import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    ts.register(get_types_from_msg(RAW_BGRA_DEF, RAW_BGRA))
    Raw, Joy = ts.types[RAW_BGRA], ts.types["sensor_msgs/msg/Joy"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with open(path, "wb") as fh:
        w = Writer(fh)
        w.start(profile="ros2", library="kiln-tests")
        ids = {}
        for topic, msgtype in (("/doom_image", RAW_BGRA), ("/joy", "sensor_msgs/msg/Joy")):
            schema = w.register_schema(msgtype, "ros2msg", ts.generate_msgdef(msgtype, ros_version=2)[0].encode())
            ids[topic] = w.register_channel(topic, "cdr", schema)
        for i in range(FRAMES):
            t = bf.START_NS + i * 100_000_000
            hdr = Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id="cam")
            joy = Joy(header=hdr, axes=np.zeros(2, np.float32), buttons=np.full(15, i % 2, np.int32))
            w.add_message(ids["/joy"], log_time=t, publish_time=t, data=bytes(ts.serialize_cdr(joy, Joy.__msgtype__)))
            img = Raw(header=hdr, height=3, width=4, data=_bgra(i).reshape(-1))
            w.add_message(
                ids["/doom_image"],
                log_time=t + 1000,
                publish_time=t + 1000,
                data=bytes(ts.serialize_cdr(img, RAW_BGRA)),
            )
        w.finish()
    return path


def doom_spec() -> dict:
    """hephaes 0.3.0's built-in doom template as its `model_dump(by_alias=True)` writes it (nulls included)."""
    join = {
        "topic": "/joy",
        "sync_policy": "last-known-before",
        "tolerance_ns": None,
        "staleness_ns": 250000000,
        "required": True,
        "missing": "default",
        "default_value": {"buttons": [0] * 15},
    }
    rs = {"kind": "trigger", "trigger_topic": "/doom_image", "joins": [join]}
    return {
        "schema": {"name": "doom_ros_train_py_compatible", "version": 1},
        "input": {
            "paths": [],
            "recursive": False,
            "include_topics": ["/doom_image", "/joy"],
            "exclude_topics": [],
            "start_ns": None,
            "end_ns": None,
            "max_messages": None,
            "sample_rate_hz": None,
        },
        "decoding": {
            "topics": {
                "/doom_image": {"type_hint": RAW_BGRA, "on_failure": "warn"},
                "/joy": {"type_hint": "sensor_msgs/msg/Joy", "on_failure": "warn"},
            },
            "on_decode_failure": "warn",
        },
        "row_strategy": rs,
        "assembly": rs,
        "features": {
            "image": {
                "source": {"kind": "path", "topic": "/doom_image", "field_path": "data"},
                "dtype": "bytes",
                "shape": None,
                "required": True,
                "missing": "default",
                "transforms": [
                    {"kind": "image_color_convert", "params": {"from": "bgra", "to": "rgb"}},
                    {"kind": "image_encode", "params": {"format": "png"}},
                ],
                "description": None,
                "presence_flag": True,
            },
            "buttons": {
                "source": {"kind": "path", "topic": "/joy", "field_path": "buttons"},
                "dtype": "int64",
                "shape": [15],
                "required": True,
                "missing": "zeros",
                "transforms": [{"kind": "cast", "params": {"dtype": "int64"}}],
                "description": None,
                "presence_flag": True,
            },
        },
        "labels": {"primary": "buttons", "source": None, "class_map": {}, "multi_label": False, "transforms": []},
        "draft_origin": None,
        "split": None,
        "validation": {
            "sample_n": 128,
            "fail_fast": True,
            "bad_record_budget": 0,
            "expected_features": ["image", "buttons"],
            "preview": False,
        },
        "output": {
            "format": "tfrecord",
            "compression": "gzip",
            "payload_encoding": "typed_features",
            "null_encoding": "presence_flag",
            "image_payload_contract": "bytes_v2",
            "shards": 8,
            "filename_template": "{split}-{shard:05d}-of-{num_shards:05d}.tfrecord",
            "write_manifest": True,
        },
        "mapping": None,
        "resample": None,
        "write_manifest": True,
    }


async def test_hephaes_template_with_nulls_on_raw_bgra_images(client, tmp_path):
    asset = await register(client, write_raw_bgra_mcap(tmp_path / "doom.mcap"))
    run = await convert(client, {"asset_ids": [asset["id"]], "spec": doom_spec()})
    files = await outputs_of(client, run)
    datasets = sorted(f["file_name"] for f in files if f["role"] == "dataset")
    assert datasets == [f"all-{k:05d}-of-00008.tfrecord" for k in range(8)]
    rows = []
    for f in files:
        if f["role"] == "dataset":
            path = (await client.get(f"/outputs/{f['id']}")).json()["file_path"]
            rows += [decode_example(r) for r in read_records(path)]
    assert len(rows) == FRAMES
    for i, row in enumerate(sorted(rows, key=lambda r: r["timestamp_ns"][0])):
        rgb = np.asarray(Image.open(io.BytesIO(row["image"][0])))
        assert rgb.shape == (3, 4, 3) and rgb[0, 0].tolist() == [3 * i, 2 * i, i]  # BGRA -> RGB
        assert row["buttons"] == [i % 2] * 15


async def test_spec_with_nulls_is_accepted_everywhere(client, tmp_path):
    spec = doom_spec()
    r = await client.post("/conversion-configs", json={"name": "doom", "spec": spec})
    assert r.status_code == 201, r.text
    stored = r.json()["resolved_spec"]
    assert stored["split"]["strategy"] == "none" and stored["write_manifest"] is True
    assert stored["output"]["write_manifest"] is True
    bare = trigger_spec()
    bare["features"]["acc"]["source"]["field_path"] = None  # whole message
    bare["split"] = None
    asset = await register(client, recording(tmp_path))
    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": bare, "sample_n": 1})
    assert r.status_code == 200, r.text


async def test_raw_image_bytes_are_never_opened_as_files(client, tmp_path):
    """mono/rgb raw images through image transforms, with and without the message around them."""
    asset = await register(client, recording(tmp_path))
    spec = {
        "row_strategy": {"kind": "per-message", "topic": "/camera/image_raw"},
        "features": {
            "png": {
                "source": {"kind": "path", "topic": "/camera/image_raw", "field_path": "data"},
                "dtype": "bytes",
                "required": True,
                "transforms": [
                    {"kind": "image_color_convert", "params": {"from": "rgb", "to": "bgr"}},
                    {"kind": "image_encode", "params": {"format": "png"}},
                ],
            }
        },
        "validation": {"fail_fast": True},
        "output": {"format": "parquet"},
    }
    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": spec, "sample_n": 2})
    assert r.status_code == 200, r.text
    assert r.json()["preview"]["bad_records"] == 0


async def test_spec_validation_errors_have_fastapis_shape(client, tmp_path):
    asset = await register_indexed(client, recording(tmp_path))
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec(shards=0)})
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "spec", "output", "shards"] and set(err) == {"loc", "msg", "type"}
    assert "pydantic" not in r.text and "validation error for" not in r.text
    r = await client.post(
        "/conversions", json={"asset_ids": [asset["id"]], "output": {"format": "parquet", "shards": "many"}}
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "output", "shards"]
    assert "pydantic" not in r.text and "OutputSpec" not in r.text


async def test_config_output_echoes_the_request(client, tmp_path):
    asset = await register_indexed(client, recording(tmp_path))
    body = {"asset_ids": [asset["id"]], "output": {"format": "parquet", "compression": "none"}}
    r = await client.post("/conversions", json=body)
    assert r.status_code == 201
    assert r.json()["config"]["output"] == body["output"] and r.json()["job"]["config_json"]["output"] == body["output"]
    assert r.json()["config"]["spec"]["output"]["shards"] == 1  # the resolved spec stays in `spec`
    run = await convert(client, {"asset_ids": [asset["id"]]})
    assert run["config"]["output"] == {"format": "parquet", "compression": "none"}
    spec = trigger_spec("tfrecord", compression="gzip")
    run = await convert(client, {"asset_ids": [asset["id"]], "spec": spec})
    assert run["config"]["output"] == {"format": "tfrecord", "compression": "gzip"}
    assert run["output_files"] and all(
        isinstance(p, str) and p.startswith(run["output_path"]) for p in run["output_files"]
    )


async def test_reference_visible_values(client):
    caps = (await client.get("/conversions/capabilities")).json()
    assert caps["persistence"]["mode"] == "sqlite-json"
    assert (await client.get("/health")).json() == {"status": "ok", "app_name": "Hephaes Backend"}


async def test_corrupt_recording_ends_failed_and_is_reindexed(client, tmp_path):
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"NOTMCAP!" + b"\0" * 64)
    asset = await register(client, bad)
    r = await client.post(f"/assets/{asset['id']}/index")
    assert r.status_code == 422
    detail = (await client.get(f"/assets/{asset['id']}")).json()
    assert detail["asset"]["indexing_status"] == "failed"
    assert detail["metadata"]["indexing_error"] == r.json()["detail"]
    r = await client.post("/assets/reindex-all")
    assert [a["id"] for a in r.json()["failed_assets"]] == [asset["id"]]


async def test_utf8_upload_names_come_back_intact(client, tmp_path):
    data = recording(tmp_path).read_bytes()
    name = "fahrt-müller-東京.bag"
    r = await client.post("/assets/upload", content=data, headers={"X-File-Name": name.encode()})  # raw UTF-8
    assert r.status_code == 201, r.text
    assert r.json()["file_name"] == name and r.json()["file_path"].endswith("/" + name)
    r = await client.post(
        "/assets/upload", content=data + b"x", headers={"X-File-Name": "UTF-8''caf%C3%A9.bag"}
    )  # RFC 8187 extended value
    assert r.status_code == 201 and r.json()["file_name"] == "café.bag"


async def test_index_job_failure_of_any_kind_is_recorded(client, tmp_path, monkeypatch):
    import kiln.apps.robotics.jobs as jobs_mod

    def boom(_path):
        raise KeyError("unexpected")

    monkeypatch.setattr(jobs_mod, "index_recording", boom)
    asset = await register(client, recording(tmp_path))
    r = await client.post(f"/assets/{asset['id']}/index")
    assert r.status_code == 422
    detail = (await client.get(f"/assets/{asset['id']}")).json()
    assert detail["asset"]["indexing_status"] == "failed" and "KeyError" in detail["metadata"]["indexing_error"]
    job = (await client.get("/jobs", params={"type": "index"})).json()[0]
    assert (await wait_job(client, job["id"]))["status"] == "failed"


async def test_content_urls_carry_the_mount_prefix(app, client, tmp_path):
    import httpx

    asset = await register(client, recording(tmp_path))
    run = await convert(client, {"asset_ids": [asset["id"]], "spec": trigger_spec()})
    transport = httpx.ASGITransport(app=app, root_path="/robotics")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as mounted:
        r = await mounted.get("/robotics/outputs", params={"conversion_id": run["id"]})
        assert r.status_code == 200, r.text
        urls = [o["content_url"] for o in r.json()]
        assert urls and all(u.startswith("/robotics/outputs/") for u in urls)
        detail = await mounted.get(f"/robotics/outputs/{r.json()[0]['id']}")
        assert detail.json()["content_url"] == urls[0]
    plain = (await client.get("/outputs", params={"conversion_id": run["id"]})).json()
    assert all(o["content_url"].startswith("/outputs/") for o in plain)
