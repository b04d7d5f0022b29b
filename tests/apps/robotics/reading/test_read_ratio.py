"""Compression-ratio bounds: chunks, messages and whole compressed storage files (rosbag2
`compression_mode: file`) may not decompress to more than KILN_ROBOTICS_MAX_RATIO times their
compressed size (above bounds.RATIO_FLOOR), whatever they declare."""

from __future__ import annotations

import struct

import lz4.frame
import pytest
import zstandard
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_typestore

from kiln.apps.robotics.config import RoboticsSettings, set_robotics_settings
from kiln.apps.robotics.reading import bounds
from kiln.apps.robotics.reading.reader import RecordingError, open_recording
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import register, trigger_spec

MIB = 1024 * 1024
RATIO = "KILN_ROBOTICS_MAX_RATIO"
# 640x480 frames of one value (20 MB in ~2 s of recording) compress far more than real sensor
# data (~1600x as one zstd file): tests that need them accepted raise the ratio
GENEROUS = 100_000
DENSE = bf.RecordingPlan(duration_s=2.2, image_size=(640, 480))


@pytest.fixture
def ratio_10():
    before = bounds.limit(), bounds.ratio()
    bounds.set_limit(before[0], 10)
    yield
    bounds.set_limit(*before)


def _mcap_chunk(path, declared: int) -> int:
    """An MCAP whose one zstd chunk (no summary) declares `declared` bytes; returns its file size."""
    comp = zstandard.ZstdCompressor(write_content_size=False).compressobj()
    payload = b"".join(comp.compress(b"\0" * MIB) for _ in range(declared // MIB)) + comp.flush()
    header = b"\x01" + struct.pack("<Q", 12) + struct.pack("<I", 4) + b"ros2" + struct.pack("<I", 0)
    body = (
        struct.pack("<QQQI", 0, 1, declared, 0)
        + struct.pack("<I", 4)
        + b"zstd"
        + struct.pack("<Q", len(payload))
        + payload
    )
    path.write_bytes(b"\x89MCAP0\r\n" + header + b"\x06" + struct.pack("<Q", len(body)) + body)
    return path.stat().st_size


def test_a_chunk_under_the_size_limit_but_over_the_ratio_is_refused_before_decompressing(tmp_path):
    size = _mcap_chunk(tmp_path / "dense.mcap", 64 * MIB)  # 64 MiB (< 256) from a few KB
    assert size < 64 * 1024
    with pytest.raises(RecordingError, match=RATIO):
        open_recording(tmp_path / "dense.mcap")


@pytest.mark.parametrize("fmt", ["mcap-zstd", "bag-lz4"])
def test_recorded_chunks_follow_the_ratio_setting(tmp_path, fmt, monkeypatch):
    path = bf.write_recording(tmp_path / ("rec.bag" if fmt.startswith("bag") else "rec.mcap"), fmt, DENSE)
    with open_recording(path) as reader:  # defaults: chunks of a few MB are under the floor
        assert sum(1 for _ in reader.iter_raw()) > 0
    monkeypatch.setattr(bounds, "RATIO_FLOOR", MIB)
    before = bounds.limit(), bounds.ratio()
    bounds.set_limit(before[0], 2)
    try:
        with pytest.raises(RecordingError, match=RATIO):
            open_recording(path)
    finally:
        bounds.set_limit(*before)


def test_decompressors_stop_at_the_ratio_whatever_is_declared(ratio_10):
    zeros = b"\0" * (bounds.RATIO_FLOOR + MIB)
    for fn, comp in (
        (bounds.zstd_bounded, zstandard.ZstdCompressor(write_content_size=False).compress),
        (bounds.zstd_bounded, zstandard.ZstdCompressor().compress),
        (bounds.lz4_bounded, lambda b: lz4.frame.compress(b, store_size=False)),
    ):
        with pytest.raises(RecordingError, match=RATIO):
            fn(comp(zeros))
    small = zstandard.ZstdCompressor().compress(b"\0" * MIB)  # very dense but under the floor: harmless
    assert bounds.zstd_bounded(small) == b"\0" * MIB


def _file_compressed_bag(folder, plan: bf.RecordingPlan):
    ts = get_typestore(Stores.ROS2_HUMBLE)
    writer = Ros2Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        conns = {p.topic: writer.add_connection(p.topic, p.msgtype, typestore=ts) for p in plan.topics}
        for t, i, p in bf._events(plan):
            writer.write(
                conns[p.topic], t, ts.serialize_cdr(bf.make_message(ts, False, p.msgtype, i, t, plan), p.msgtype)
            )
    return folder


def test_a_file_compressed_rosbag2_is_decompressed_within_the_ratio(tmp_path):
    folder = _file_compressed_bag(tmp_path / "zbag", DENSE)
    [stored] = folder.glob("*.zstd")
    before = bounds.limit(), bounds.ratio()
    try:
        bounds.set_limit(before[0], GENEROUS)
        with open_recording(folder) as reader:
            assert sum(1 for _ in reader.iter_raw()) == sum(DENSE.count(p.topic) for p in DENSE.topics)
        bounds.set_limit(before[0], 10)
        with pytest.raises(RecordingError, match=RATIO):  # streamed, stopped at 10x the file's size
            open_recording(folder)
        # a storage file whose frame declares its size is refused before decompressing anything
        stored.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * (bounds.RATIO_FLOOR + MIB)))
        with pytest.raises(RecordingError, match=f"declares .*\\({RATIO}\\); refused before decompressing"):
            open_recording(folder)
    finally:
        bounds.set_limit(*before)


async def test_the_ratio_setting_reaches_requests_and_jobs(client, app, tmp_path):
    folder = _file_compressed_bag(tmp_path / "zbag", DENSE)
    asset = await register(client, folder)
    set_robotics_settings(app.state.kernel, RoboticsSettings(_env_file=None, max_ratio=10))
    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": trigger_spec()})
    assert r.status_code == 422 and RATIO in r.json()["detail"], r.text
    set_robotics_settings(app.state.kernel, RoboticsSettings(_env_file=None, max_ratio=GENEROUS))
    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": trigger_spec()})
    assert r.status_code == 200, r.text
