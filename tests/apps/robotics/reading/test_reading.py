"""Reading every recording layout: detection, counts, ordering, decoding, failures."""

from __future__ import annotations

import pytest

from kiln.apps.robotics.reading.reader import RecordingError, detect_source, open_recording
from tests.apps.robotics import bagfactory as bf

EXT = {"bag": ".bag", "mcap": ".mcap"}


def _write(tmp_path, fmt, plan=None):
    return bf.write_recording(tmp_path / f"rec{EXT.get(fmt.split('-')[0], '')}", fmt, plan)


@pytest.mark.parametrize("fmt", bf.FORMATS)
def test_every_layout_reads_counts_order_and_values(tmp_path, fmt):
    plan = bf.RecordingPlan()
    path = _write(tmp_path, fmt, plan)
    with open_recording(path) as reader:
        expected_ros = "ROS1" if fmt.startswith("bag") else "ROS2"
        assert reader.source.ros_version == expected_ros
        assert reader.topics["/imu"] == bf.IMU
        assert reader.topics["/camera/image_raw"] == bf.IMAGE
        assert reader.message_counts() == {p.topic: plan.count(p.topic) for p in plan.topics}
        stamps = [m.timestamp_ns for m in reader.iter_raw()]
        assert stamps == sorted(stamps)
        assert len(stamps) == reader.message_count == sum(plan.count(p.topic) for p in plan.topics)
        imu = list(reader.read_messages(["/imu"]))
        assert [m.message.linear_acceleration.x for m in imu] == [bf.imu_value(i) for i in range(len(imu))]
        images = list(reader.read_messages(["/camera/image_raw"]))
        assert images[3].message.data[0] == bf.image_fill(3)
        assert images[3].message.width == plan.image_size[0]


def test_time_window_and_topic_filter(tmp_path):
    path = _write(tmp_path, "mcap-zstd")
    with open_recording(path) as reader:
        start = reader.start_ns
        msgs = list(reader.iter_raw(["/odom"], start_ns=start, stop_ns=start + 100_000_000))
        assert {m.topic for m in msgs} == {"/odom"}
        assert len(msgs) == 5  # 50 Hz over 100 ms, stop exclusive
        assert list(reader.iter_raw(["/nope"])) == []


def test_type_hint_and_decode_failure_policies(tmp_path):
    path = _write(tmp_path, "bag")
    with open_recording(path) as reader:
        warnings: list[str] = []
        got = list(reader.read_messages(["/status"], type_hints={"/status": bf.ODOM}, warnings=warnings))
        assert got == [] and len(warnings) == 2
        assert list(reader.read_messages(["/status"], type_hints={"/status": bf.ODOM}, on_failure="skip")) == []
        with pytest.raises(RecordingError, match="failed to decode /status"):
            list(reader.read_messages(["/status"], type_hints={"/status": bf.ODOM}, on_failure="fail"))


def test_split_ros1_bags_in_a_directory(tmp_path):
    d = tmp_path / "split"
    d.mkdir()
    bf.write_recording(d / "a.bag", "bag", bf.RecordingPlan(duration_s=1.0))
    plan_b = bf.RecordingPlan(duration_s=1.0)
    for p in plan_b.topics:
        p.offset_ns += 1_000_000_000
    bf.write_recording(d / "b.bag", "bag", plan_b)
    src = detect_source(d)
    assert src.layout == "directory" and len(src.files) == 2
    with open_recording(d) as reader:
        assert reader.message_counts()["/imu"] == 200


def test_unsupported_and_broken_inputs(tmp_path):
    with pytest.raises(RecordingError, match="does not exist"):
        detect_source(tmp_path / "missing.bag")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RecordingError, match="unsupported recording type"):
        detect_source(tmp_path / "notes.txt")
    (tmp_path / "fake.bag").write_bytes(b"not a bag at all")
    with pytest.raises(RecordingError, match="cannot open recording"):
        open_recording(tmp_path / "fake.bag")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match="holds no recording"):
        detect_source(tmp_path / "empty")


@pytest.mark.parametrize("fmt", ["mcap", "mcap-zstd"])
def test_mcap_messages_outlive_the_reader_and_match_rosbags(tmp_path, fmt):
    """The direct chunk reader hands out views into memory-mapped chunks: they must stay
    valid after the reader is closed and hold exactly what rosbags reads."""
    from rosbags.highlevel import AnyReader

    path = _write(tmp_path, fmt)
    with open_recording(path) as reader:
        assert reader._fast is not None  # the direct reader is the one under test
        kept = [(m.topic, m.timestamp_ns, m.data) for m in reader.iter_raw()]
    with AnyReader([path]) as ref:
        expected = [(c.topic, t, bytes(d)) for c, t, d in ref.messages()]
    assert sorted((t, ts, bytes(d)) for t, ts, d in kept) == sorted(expected)


def _plain(v):
    if hasattr(v, "__dataclass_fields__"):
        return {k: _plain(getattr(v, k)) for k in v.__dataclass_fields__}
    if hasattr(v, "tolist"):
        return v.tolist()
    return [_plain(x) for x in v] if isinstance(v, list) else v


@pytest.mark.parametrize("fmt", ["mcap", "bag"])
def test_decoding_builds_only_decoders_and_matches_rosbags(tmp_path, fmt):
    """Decoding generates one function per type (not rosbags' thirteen) and decodes as rosbags
    does; anything else asked of the typestore still gets the complete definition."""
    from rosbags.highlevel import AnyReader

    path = _write(tmp_path, fmt)
    with open_recording(path) as reader, AnyReader([path]) as ref:
        by_topic = {c.topic: c for c in ref.connections}
        for raw in reader.iter_raw():
            mine = reader.deserializer(raw.msgtype)(raw.data)
            assert _plain(mine) == _plain(ref.deserialize(bytes(raw.data), by_topic[raw.topic].msgtype))
        store = reader.typestore
        assert {type(store.cache[t]).__name__ for t in reader.topics.values()} == {"_DecoderMsgdef"}
        assert all(d._complete is None for d in store.cache.values())  # no serializer built
        image = next(reader.read_messages(["/camera/image_raw"])).message
        again = (
            store.deserialize_cdr(store.serialize_cdr(image, bf.IMAGE), bf.IMAGE)
            if fmt == "mcap"
            else (store.deserialize_ros1(store.serialize_ros1(image, bf.IMAGE), bf.IMAGE))
        )
        assert _plain(again) == _plain(image)
