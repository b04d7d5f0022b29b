"""Conversion output checked by reading it back: Parquet with pyarrow, TFRecord by parsing."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from kiln.apps.robotics.conversion import ConversionCancelled, preview, run_conversion, writers
from kiln.apps.robotics.conversion.job import BadRecordError
from kiln.apps.robotics.conversion.tfrecord import crc32c_py, decode_example, read_records
from kiln.apps.robotics.spec import auto_mapping, build_legacy_spec
from tests.apps.robotics import bagfactory as bf

MS = 1_000_000
PLAN = bf.RecordingPlan()
IMU_T = [bf.START_NS + 1 * MS + 10 * MS * i for i in range(PLAN.count("/imu"))]
ODOM_T = [bf.START_NS + 2 * MS + 20 * MS * i for i in range(PLAN.count("/odom"))]
CAM_T = [bf.START_NS + 100 * MS * i for i in range(PLAN.count("/camera/image_raw"))]


def path_src(topic, field):
    return {"kind": "path", "topic": topic, "field_path": field}


def trigger_spec(fmt="parquet", **over):
    spec = {
        "row_strategy": {
            "kind": "trigger",
            "trigger_topic": "/camera/image_raw",
            "joins": [{"topic": "/imu"}, {"topic": "/odom", "sync_policy": "nearest"}],
        },
        "features": {
            "image": {"source": path_src("/camera/image_raw", "data"), "dtype": "bytes"},
            "acc": {"source": path_src("/imu", "linear_acceleration.x"), "dtype": "float64"},
            "odom_x": {"source": path_src("/odom", "pose.pose.position.x"), "dtype": "float64"},
            "cov": {"source": path_src("/odom", "pose.covariance"), "dtype": "float32", "shape": [36]},
        },
        "output": {"format": fmt, "compression": "zstd" if fmt == "parquet" else "none"},
    }
    spec.update(over)
    return spec


def last_before(times, t):
    idx = [i for i, x in enumerate(times) if x <= t]
    return idx[-1] if idx else None


def nearest(times, t):
    return min(range(len(times)), key=lambda i: (abs(times[i] - t), times[i] > t))


def datasets(result):
    return [f for f in result.files if f.role == "dataset"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    names = {"bag-lz4": "r.bag", "mcap-zstd": "r.mcap", "db3": "rdb"}
    return {fmt: bf.write_recording(d / name, fmt) for fmt, name in names.items()}


@pytest.mark.parametrize("fmt", ["bag-lz4", "mcap-zstd", "db3"])
def test_trigger_parquet_values(recordings, tmp_path, fmt):
    result = run_conversion(recordings[fmt], trigger_spec(), tmp_path)
    assert result.dropped_rows == 1  # first frame has no IMU sample before it (required join)
    assert result.rows_written == len(CAM_T) - 1
    [ds] = datasets(result)
    assert ds.relative_path == "episode_0001.parquet" and ds.rows == result.rows_written
    table = pq.read_table(ds.path).to_pydict()
    assert table["timestamp_ns"] == CAM_T[1:]
    for k, t in enumerate(table["timestamp_ns"]):
        frame = CAM_T.index(t)
        assert table["image"][k] == bytes([bf.image_fill(frame)]) * (8 * 6 * 3)
        assert table["acc"][k] == bf.imu_value(last_before(IMU_T, t))
        assert table["odom_x"][k] == bf.odom_x(nearest(ODOM_T, t))
        assert table["cov"][k] == [0.0] * 36
    roles = sorted(f.role for f in result.files)
    assert roles == ["dataset", "manifest", "report"]
    manifest = json.loads(Path(next(f.path for f in result.files if f.role == "manifest")).read_text())
    assert manifest["dataset"]["rows_written"] == result.rows_written
    assert manifest["conversion"]["dropped_rows"] == 1
    assert manifest["source"]["storage_format"] in ("bag", "mcap", "sqlite3")


def test_join_policies(recordings, tmp_path):
    joins = [
        {"topic": "/imu", "sync_policy": "exact-within-tolerance", "tolerance_ns": 2 * MS, "required": False},
        {
            "topic": "/odom",
            "sync_policy": "last-known-before",
            "staleness_ns": 20 * MS,
            "required": False,
            "missing": "zeros",
        },
        {"topic": "/status", "sync_policy": "last-known-before", "required": False, "missing": "forward_fill"},
    ]
    spec = trigger_spec(row_strategy={"kind": "trigger", "trigger_topic": "/camera/image_raw", "joins": joins})
    spec["features"] = {
        "acc": {"source": path_src("/imu", "linear_acceleration.x"), "dtype": "float64"},
        "odom_x": {"source": path_src("/odom", "pose.pose.position.x"), "dtype": "float64", "missing": "zeros"},
        "status": {"source": path_src("/status", "data"), "dtype": "json"},
    }
    result = run_conversion(recordings["mcap-zstd"], spec, tmp_path)
    t = pq.read_table(datasets(result)[0].path).to_pydict()
    assert result.rows_written == len(CAM_T)
    for k, ts in enumerate(t["timestamp_ns"]):
        i = nearest(IMU_T, ts)
        assert t["acc"][k] == (bf.imu_value(i) if abs(IMU_T[i] - ts) <= 2 * MS else None)
        j = last_before(ODOM_T, ts)
        fresh = j is not None and ts - ODOM_T[j] <= 20 * MS
        assert t["odom_x"][k] == (bf.odom_x(j) if fresh else 0.0)
        assert t["odom_x__present"][k] is fresh
    assert t["status"][0] is None and json.loads(t["status"][5]) == "status 0"


def test_per_message_and_metadata_sources(recordings, tmp_path):
    spec = {
        "row_strategy": {"kind": "per-message", "topic": "/imu"},
        "features": {
            "t": {"source": {"kind": "metadata", "key": "timestamp_ns"}, "dtype": "int64"},
            "vec": {
                "source": {
                    "kind": "concat",
                    "sources": [path_src("/imu", "linear_acceleration.x"), path_src("/imu", "angular_velocity.z")],
                },
                "dtype": "float32",
                "shape": [2],
            },
            "k": {"source": {"kind": "constant", "value": 7}, "dtype": "int64"},
        },
        "output": {"format": "parquet"},
    }
    result = run_conversion(recordings["bag-lz4"], spec, tmp_path)
    t = pq.read_table(datasets(result)[0].path).to_pydict()
    assert t["t"] == IMU_T == t["timestamp_ns"]
    assert t["vec"][3] == [bf.imu_value(3), -bf.imu_value(3)]
    assert set(t["k"]) == {7}


def test_resample_downsample_and_interpolate(recordings, tmp_path):
    feats = {"x": {"source": path_src("/odom", "pose.pose.position.x"), "dtype": "float64"}}
    down = {
        "row_strategy": {"kind": "resample", "freq_hz": 10, "method": "downsample", "topics": ["/odom"]},
        "features": feats,
        "output": {"format": "parquet"},
    }
    t = pq.read_table(datasets(run_conversion(recordings["mcap-zstd"], down, tmp_path / "d"))[0].path).to_pydict()
    assert len(t["x"]) == 20
    assert t["x"][0] == bf.odom_x(4)  # last of the five 50 Hz samples in the first 100 ms bucket
    interp = {**down, "row_strategy": {"kind": "resample", "freq_hz": 30, "method": "interpolate", "topics": ["/odom"]}}
    t = pq.read_table(datasets(run_conversion(recordings["mcap-zstd"], interp, tmp_path / "i"))[0].path).to_pydict()
    for ts, x in zip(t["timestamp_ns"], t["x"], strict=True):
        # odom x grows linearly: 0.25 per 20 ms from its first sample
        assert x == pytest.approx(0.25 * (ts - ODOM_T[0]) / (20 * MS))
    assert t["timestamp_ns"][-1] <= ODOM_T[-1]


def test_shards_in_processes_equal_single_run(recordings, tmp_path):
    single = run_conversion(recordings["bag-lz4"], trigger_spec(), tmp_path / "one")
    sharded = run_conversion(
        recordings["bag-lz4"],
        trigger_spec(output={"format": "parquet", "shards": 3}),
        tmp_path / "three",
        max_workers=2,
    )
    names = [f.relative_path for f in datasets(sharded)]
    assert names == [f"episode_0001-0000{k}-of-00003.parquet" for k in range(3)]
    merged = {}
    for f in datasets(sharded):
        part = pq.read_table(f.path).to_pydict()
        for k in part:
            merged.setdefault(k, []).extend(part[k])
    assert merged == pq.read_table(datasets(single)[0].path).to_pydict()
    assert sharded.rows_written == single.rows_written and sharded.dropped_rows == single.dropped_rows


def test_multi_file_episodes_keep_attribution(recordings, tmp_path):
    paths = [recordings["bag-lz4"], recordings["db3"]]
    result = run_conversion(paths, trigger_spec(), tmp_path)
    assert [e["episode_id"] for e in result.episodes] == ["episode_0001", "episode_0002"]
    by_ep = {f.episode_id: f for f in datasets(result)}
    assert by_ep["episode_0002"].source_path == str(paths[1].resolve())
    assert result.rows_written == 2 * (len(CAM_T) - 1)


def test_random_and_time_splits(recordings, tmp_path):
    spec = trigger_spec(
        split={"strategy": "random", "train_fraction": 0.6, "val_fraction": 0.2, "test_fraction": 0.2, "seed": 3}
    )
    result = run_conversion(recordings["mcap-zstd"], spec, tmp_path / "r")
    counts = {f.split: pq.read_metadata(f.path).num_rows for f in datasets(result)}
    assert sum(counts.values()) == result.rows_written and set(counts) <= {"train", "val", "test"}
    again = run_conversion(recordings["mcap-zstd"], spec, tmp_path / "r2")
    assert {f.split: f.rows for f in datasets(again)} == counts  # deterministic
    timed = run_conversion(recordings["mcap-zstd"], trigger_spec(split={"strategy": "time"}), tmp_path / "t")
    parts = {f.split: pq.read_table(f.path).column("timestamp_ns").to_pylist() for f in datasets(timed)}
    assert max(parts["train"]) < min(parts["val"]) < min(parts["test"])


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_tfrecord_records_parse_back(recordings, tmp_path, compression):
    spec = trigger_spec("tfrecord")
    spec["output"]["compression"] = compression
    result = run_conversion(recordings["bag-lz4"], spec, tmp_path)
    [ds] = datasets(result)
    examples = [decode_example(r) for r in read_records(ds.path)]
    assert len(examples) == result.rows_written == len(CAM_T) - 1
    ex = examples[2]
    t = ex["timestamp_ns"][0]
    assert ex["image"] == [bytes([bf.image_fill(CAM_T.index(t))]) * 144]
    assert ex["acc"] == [pytest.approx(bf.imu_value(last_before(IMU_T, t)))]
    assert ex["acc__present"] == [1] and len(ex["cov"]) == 36
    manifest = json.loads(Path(next(f.path for f in result.files if f.role == "manifest")).read_text())
    assert manifest["conversion"]["payload_representation"]["image_payload_contract"] == "bytes_v2"


def test_legacy_mapping_tfrecord_flattens_and_honours_image_contract(recordings, tmp_path):
    mapping = {"cam": ["/missing", "/camera/image_raw"], "imu": ["/imu"]}
    for contract in ("bytes_v2", "legacy_list_v1"):
        spec = build_legacy_spec(mapping, output={"format": "tfrecord", "image_payload_contract": contract})
        result = run_conversion(recordings["mcap-zstd"], spec, tmp_path / contract)
        examples = [decode_example(r) for r in read_records(datasets(result)[0].path)]
        distinct = sorted(set(CAM_T) | set(IMU_T))
        assert [e["timestamp_ns"][0] for e in examples] == distinct
        cam = next(e for e in examples if e["cam__present"] == [1])
        if contract == "bytes_v2":
            assert cam["cam__data"] == [bytes([0]) * 144]
        else:
            assert cam["cam__data"] == [0] * 144
        imu = next(e for e in examples if e["imu__present"] == [1])
        assert imu["imu__linear_acceleration__x"] == [0.0] and "imu____msgtype__" not in imu
        assert result.episodes[0]["mapping_resolved"] == {"cam": "/camera/image_raw", "imu": "/imu"}


def test_legacy_mapping_parquet_downsample(recordings, tmp_path):
    spec = build_legacy_spec({"odom": ["/odom"]}, resample={"freq_hz": 5, "method": "downsample"})
    result = run_conversion(recordings["db3"], spec, tmp_path)
    t = pq.read_table(datasets(result)[0].path).to_pydict()
    assert len(t["odom"]) == 10
    assert t["odom"][0]["pose"]["pose"]["position"]["x"] == bf.odom_x(9)
    with pytest.raises(ValueError, match="No requested topics"):
        run_conversion(recordings["db3"], build_legacy_spec({"x": ["/nope"]}), tmp_path / "x")


@pytest.mark.parametrize("fmt", ["mcap", "bag-lz4", "db3"])
def test_legacy_default_layout_is_typed_with_binary_payloads(tmp_path, fmt):
    """The default request (no spec, one column per topic): every message a typed struct, image
    and cloud `data` one binary value each, row groups bounded by bytes."""
    plan = bf.RecordingPlan(duration_s=1.0, image_size=(320, 240))  # 230 KB frames
    path = bf.write_recording(tmp_path / ("rec.bag" if fmt.startswith("bag") else "rec.mcap"), fmt, plan)
    spec = build_legacy_spec(auto_mapping([p.topic for p in plan.topics]), output={"format": "parquet"})
    before = writers.ROW_GROUP_BYTES
    writers.ROW_GROUP_BYTES = 1024 * 1024
    try:
        result = run_conversion(path, spec, tmp_path / "out")
    finally:
        writers.ROW_GROUP_BYTES = before
    pf = pq.ParquetFile(datasets(result)[0].path)
    schema = pf.schema_arrow
    image_t = schema.field("camera_image_raw").type
    assert image_t.field("data").type == pa.large_binary() and image_t.field("height").type == pa.uint32()
    assert schema.field("imu").type.field("orientation_covariance").type == pa.large_list(pa.float64())
    assert schema.field("lidar_points").type.field("data").type == pa.large_binary()
    rows = pf.read().to_pylist()
    frames = [r["camera_image_raw"] for r in rows if r["camera_image_raw"] is not None]
    assert len(frames) == plan.count("/camera/image_raw")
    assert frames[3]["data"] == bytes([bf.image_fill(3)]) * (320 * 240 * 3) and frames[3]["encoding"] == "rgb8"
    assert [r["status"]["data"] for r in rows if r["status"]] == [bf.status_text(0)]
    assert sum(1 for r in rows if r["imu"]) == plan.count("/imu")
    big = max(pf.metadata.row_group(i).total_byte_size for i in range(pf.num_row_groups))
    assert pf.num_row_groups >= 3 and big < 1.5 * 1024 * 1024  # ~1 MiB groups, not all frames in one


def test_image_transforms(recordings, tmp_path):
    spec = {
        "row_strategy": {"kind": "per-message", "topic": "/camera/image_raw"},
        "features": {
            "png": {
                "source": path_src("/camera/image_raw", "data"),
                "dtype": "bytes",
                "transforms": [
                    {"kind": "image_resize", "params": {"width": 4, "height": 3}},
                    {"kind": "image_encode", "params": {"format": "png"}},
                ],
            },
            "onehot": {
                "source": path_src("/camera/image_raw", "height"),
                "dtype": "int64",
                "transforms": [{"one_hot": {"depth": 8}}],
            },
        },
        "output": {"format": "parquet"},
    }
    t = pq.read_table(datasets(run_conversion(recordings["bag-lz4"], spec, tmp_path))[0].path).to_pydict()
    img = Image.open(io.BytesIO(t["png"][5]))
    assert img.size == (4, 3) and np.asarray(img)[0, 0].tolist() == [5, 5, 5]
    assert t["onehot"][0] == [0, 0, 0, 0, 0, 0, 1, 0]


def test_required_feature_and_fail_fast(recordings, tmp_path):
    spec = trigger_spec(validation={"fail_fast": True})
    spec["row_strategy"]["joins"][0]["required"] = False
    spec["features"]["acc"]["required"] = True
    with pytest.raises(BadRecordError, match="bad record"):
        run_conversion(recordings["bag-lz4"], spec, tmp_path)
    assert not list(tmp_path.glob("*.parquet"))  # partial output removed
    spec["validation"] = {"fail_fast": False}
    result = run_conversion(recordings["bag-lz4"], spec, tmp_path / "ok")
    assert result.bad_records == 1 and result.rows_written == len(CAM_T) - 1


def test_cancel_and_progress(recordings, tmp_path):
    seen = []
    with pytest.raises(ConversionCancelled):
        run_conversion(recordings["mcap-zstd"], trigger_spec(), tmp_path, should_cancel=lambda: True)
    assert not list(tmp_path.glob("*.parquet"))
    run_conversion(recordings["mcap-zstd"], trigger_spec(), tmp_path / "p", progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_preview_shape_and_errors(recordings):
    result = preview(recordings["bag-lz4"], trigger_spec(labels={"primary": "acc"}), 3).to_dict()
    assert len(result["rows"]) == 3 and result["preflight_ok"]
    row = result["rows"][0]
    assert set(row) == {"timestamp_ns", "field_data", "presence_data"}
    assert row["field_data"]["image"]["__bytes__"] is True
    assert row["field_data"]["acc"] == bf.imu_value(9)
    assert result["dropped_count"] == 1 and result["checked_records"] == len(CAM_T) - 1
    assert result["label_summary"]["primary"] == "acc" and len(result["label_summary"]["sample_values"]) == 5
    json.dumps(result)
    with pytest.raises(ValueError, match="requires a schema-aware conversion spec"):
        preview(recordings["bag-lz4"], {"output": {"format": "parquet"}})
    with pytest.raises(ValueError, match="requires feature definitions"):
        preview(recordings["bag-lz4"], {"row_strategy": {"kind": "per-message", "topic": "/imu"}})


def test_crc32c_fallback_matches_reference_values():
    assert crc32c_py(b"123456789") == 0xE3069283
    data = os.urandom(70_001)
    from kiln.apps.robotics.conversion import tfrecord

    assert crc32c_py(data) == tfrecord.crc32c(data)
