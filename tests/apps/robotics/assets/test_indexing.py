"""Indexing from file indexes: counts, spans, exact rates, real chunk compression, metadata shape."""

from __future__ import annotations

import pytest

from kiln.apps.robotics.assets.indexing import classify_message_type, index_recording
from kiln.apps.robotics.reading.reader import RecordingError
from tests.apps.robotics import bagfactory as bf

EXT = {"bag": ".bag", "mcap": ".mcap"}
SOURCES = {"bag": "bag-index", "mcap": "mcap-summary", "db3": "sqlite", "dir": None}
COMPRESSION = {
    "bag": "none",
    "bag-bz2": "bz2",
    "bag-lz4": "lz4",
    "mcap": "none",
    "mcap-lz4": "lz4",
    "mcap-zstd": "zstd",
    "db3": "none",
    "dir-mcap": "none",
    "dir-db3": "none",
}


@pytest.mark.parametrize("fmt", bf.FORMATS)
def test_index_matches_the_recording(tmp_path, fmt):
    plan = bf.RecordingPlan()
    path = bf.write_recording(tmp_path / f"rec{EXT.get(fmt.split('-')[0], '')}", fmt, plan)
    idx = index_recording(path)
    assert idx.compression_format == COMPRESSION[fmt]
    assert idx.ros_version == ("ROS1" if fmt.startswith("bag") else "ROS2")
    assert idx.index_source != "scan"
    assert idx.start_ns == bf.START_NS
    last = max(bf.START_NS + p.offset_ns + (plan.count(p.topic) - 1) * int(1e9 / p.rate_hz) for p in plan.topics)
    assert idx.end_ns == last
    for p in plan.topics:
        t = idx.topic(p.topic)
        assert t.message_type == p.msgtype
        assert t.message_count == plan.count(p.topic)
        assert t.rate_hz == pytest.approx(p.rate_hz)  # (n-1)/span is exact on a regular stream
    meta = idx.to_metadata("asset-1")
    assert meta["message_count"] == sum(plan.count(p.topic) for p in plan.topics)
    assert meta["topic_count"] == 5
    assert meta["default_episode"] == {
        "episode_id": "asset-1:default",
        "label": "Episode 1",
        "duration": pytest.approx((last - bf.START_NS) / 1e9),
    }
    assert meta["start_time"] == "2023-11-14T22:13:20Z"
    assert set(meta["sensor_types"]) == {"camera", "imu", "lidar", "telemetry"}
    modalities = {t["name"]: t["modality"] for t in meta["topics"]}
    assert modalities == {
        "/camera/image_raw": "image",
        "/imu": "scalar_series",
        "/odom": "scalar_series",
        "/lidar/points": "points",
        "/status": "other",
    }
    raw = meta["raw_metadata"]
    assert raw["compression_format"] == COMPRESSION[fmt]
    assert raw["file_size_bytes"] > 0 and raw["storage_format"] in ("bag", "mcap", "sqlite3")


def test_classification():
    assert classify_message_type("sensor_msgs/msg/CompressedImage") == ("image", "camera")
    assert classify_message_type("sensor_msgs/msg/LaserScan") == ("points", "lidar")
    assert classify_message_type("sensor_msgs/msg/NavSatFix") == ("scalar_series", "telemetry")
    assert classify_message_type("std_msgs/msg/String") == ("other", "other")


def test_only_other_topics_report_other(tmp_path):
    plan = bf.RecordingPlan(topics=[bf.TopicPlan("/status", bf.STRING, 10.0)])
    idx = index_recording(bf.write_recording(tmp_path / "s.mcap", "mcap", plan))
    assert idx.sensor_types() == ["other"]
    assert idx.topic("/status").rate_hz == pytest.approx(10.0)


def test_unindexed_mcap_falls_back_to_scan(tmp_path):
    from mcap.writer import IndexType, Writer

    path = tmp_path / "nosummary.mcap"
    with open(path, "wb") as fh:
        w = Writer(fh, use_summary_offsets=False, use_statistics=False, index_types=IndexType(0))
        w.start("ros2", "t")
        sid = w.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        cid = w.register_channel("/s", "cdr", sid)
        for i in range(3):
            w.add_message(cid, log_time=1_000 + i, data=b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00", publish_time=0)
        w.finish()
    idx = index_recording(path)
    assert idx.topic("/s").message_count == 3
    assert idx.start_ns == 1_000 and idx.end_ns == 1_002


def test_garbage_file_is_a_recording_error(tmp_path):
    (tmp_path / "x.bag").write_bytes(b"#ROSBAG V2.0\ngarbage")
    with pytest.raises(RecordingError):
        index_recording(tmp_path / "x.bag")
