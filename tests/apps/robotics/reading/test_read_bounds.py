"""Reading within bounds: decompression bombs refused, recordings changing under a reader."""

from __future__ import annotations

import bz2
import struct
import subprocess
import sys
import textwrap

import lz4.frame
import pytest
import zstandard

from kiln.apps.robotics.reading import bounds
from kiln.apps.robotics.reading.reader import RecordingError, open_recording
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import SMALL, recording, register

MIB = 1024 * 1024


@pytest.fixture
def small_limit():
    before = bounds.limit()
    bounds.set_limit(1 * MIB)
    yield
    bounds.set_limit(before)


def _mcap_bomb(path, declared: int = 1 << 30) -> None:
    """An MCAP of a few KB whose one zstd chunk declares `declared` bytes (no summary)."""
    zeros = zstandard.ZstdCompressor().compressobj()
    payload = b"".join(zeros.compress(b"\0" * MIB) for _ in range(16)) + zeros.flush()
    header = b"\x01" + struct.pack("<Q", 12) + struct.pack("<I", 4) + b"ros2" + struct.pack("<I", 0)
    body = (
        struct.pack("<QQQI", 0, 1, declared, 0)
        + struct.pack("<I", 4)
        + b"zstd"
        + struct.pack("<Q", len(payload))
        + payload
    )
    path.write_bytes(b"\x89MCAP0\r\n" + header + b"\x06" + struct.pack("<Q", len(body)) + body)


def test_declared_chunk_bomb_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "bomb.mcap"
    _mcap_bomb(path)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(RecordingError, match="KILN_ROBOTICS_MAX_CHUNK_MB"):
        open_recording(path)


@pytest.mark.parametrize("fmt", ["bag", "bag-bz2", "bag-lz4", "mcap", "mcap-zstd", "mcap-lz4", "db3", "dir-db3"])
def test_chunks_and_blobs_over_the_limit_are_refused(tmp_path, fmt):
    plan = bf.RecordingPlan(duration_s=1.0, image_size=(320, 240))  # 230 KB frames
    path = bf.write_recording(tmp_path / ("rec.bag" if fmt.startswith("bag") else "rec.mcap"), fmt, plan)
    with open_recording(path) as reader:  # default limit: fine
        assert sum(1 for _ in reader.iter_raw()) > 0
    before = bounds.limit()
    bounds.set_limit(200 * 1024)
    try:
        with pytest.raises(RecordingError, match="KILN_ROBOTICS_MAX_CHUNK_MB"):
            open_recording(path)
    finally:
        bounds.set_limit(before)


@pytest.mark.parametrize(
    "compress",
    [
        lambda b: zstandard.ZstdCompressor().compress(b),  # content size in the frame
        lambda b: zstandard.ZstdCompressor(write_content_size=False).compress(b),
    ],
)
def test_zstd_never_produces_more_than_the_limit(small_limit, compress):
    bomb = compress(b"\0" * (8 * MIB))
    with pytest.raises(RecordingError, match="KILN_ROBOTICS_MAX_CHUNK_MB"):
        bounds.zstd_bounded(bomb)
    with pytest.raises(RecordingError):
        bounds.zstd_bounded(compress(b"ok"), declared=2 * MIB)  # the declaration alone is refused
    assert bounds.zstd_bounded(compress(b"x" * 1000)) == b"x" * 1000


def test_lz4_and_bz2_never_produce_more_than_the_limit(small_limit):
    for fn, comp in (
        (bounds.lz4_bounded, lambda b: lz4.frame.compress(b, store_size=False)),
        (bounds.lz4_bounded, lz4.frame.compress),
        (bounds.bz2_bounded, bz2.compress),
    ):
        with pytest.raises(RecordingError, match="KILN_ROBOTICS_MAX_CHUNK_MB"):
            fn(comp(b"\0" * (8 * MIB)))
        assert fn(comp(b"y" * 5000)) == b"y" * 5000
    assert bounds.bz2_bounded(bz2.compress(b"a") + bz2.compress(b"b")) == b"ab"


def test_rosbags_decompression_goes_through_the_bounds():
    from rosbags.rosbag1 import reader as r1
    from rosbags.rosbag2 import reader as r2
    from rosbags.rosbag2 import storage_mcap

    assert r1.decompressors["bz2"] is bounds.bz2_bounded and r1.decompressors["lz4"] is bounds.lz4_bounded
    assert storage_mcap.DECOMPRESSORS["zstd"] is bounds.zstd_bounded
    assert r2.zstd.decompress is bounds.zstd_bounded


async def test_bomb_preview_answers_422_and_index_fails_cleanly(client, tmp_path):
    path = tmp_path / "bomb.mcap"
    _mcap_bomb(path)
    asset = await register(client, path)
    r = await client.post(
        "/conversions/preview",
        json={
            "asset_id": asset["id"],
            "spec": {
                "row_strategy": {"kind": "per-message", "topic": "/x"},
                "features": {"x": {"source": {"kind": "path", "topic": "/x"}}},
            },
        },
    )
    assert r.status_code == 422 and "KILN_ROBOTICS_MAX_CHUNK_MB" in r.json()["detail"]
    r = await client.post(f"/assets/{asset['id']}/index")
    assert r.status_code == 422
    detail = (await client.get(f"/assets/{asset['id']}")).json()
    assert detail["asset"]["indexing_status"] == "failed" and detail["metadata"]["indexing_error"]


_TRUNCATE = textwrap.dedent("""
    import os, sys
    from kiln.apps.robotics.reading.reader import RecordingError, open_recording
    path = sys.argv[1]
    with open_recording(path) as reader:
        it = reader.iter_raw()
        next(it)
        os.truncate(path, os.path.getsize(path) // 3)
        try:
            for _ in it:
                pass
        except RecordingError as exc:
            print("ERROR:", exc)
        else:
            print("NO ERROR")
""")


@pytest.mark.parametrize("fmt", ["mcap", "mcap-zstd", "bag", "bag-lz4"])
def test_a_recording_truncated_while_read_fails_without_killing_the_process(tmp_path, fmt):
    plan = bf.RecordingPlan(duration_s=2.0, image_size=(640, 480))  # several 4 MB chunks
    path = bf.write_recording(tmp_path / ("rec.bag" if fmt.startswith("bag") else "rec.mcap"), fmt, plan)
    proc = subprocess.run([sys.executable, "-c", _TRUNCATE, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # SIGBUS would be -7
    assert "ERROR: " in proc.stdout and "recording changed while it was read" in proc.stdout, proc.stdout


async def test_a_truncated_recording_fails_the_conversion_job(client, tmp_path):
    from tests.apps.robotics.api_helpers import register_indexed, wait_job

    path = recording(tmp_path, "rec.mcap", "mcap", SMALL)
    asset = await register_indexed(client, path)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)
    r = await client.post("/conversions", json={"asset_ids": [asset["id"]]})
    assert r.status_code == 201, r.text
    job = await wait_job(client, r.json()["job_id"])
    assert job["status"] == "failed" and job["error_message"].startswith("conversion failed")
    assert (await client.get("/health")).status_code == 200


def test_chunk_buffers_are_reused_only_when_no_message_points_into_them(tmp_path):
    plan = bf.RecordingPlan(duration_s=3.0, image_size=(640, 480))  # ~9 MB a second: several chunks
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", plan)
    with open_recording(path) as reader:
        assert reader._fast is not None
        kept = [(m.topic, m.data) for m in reader.iter_raw(["/camera/image_raw"])]  # every view kept alive
        decode = reader.deserializer(bf.IMAGE)
        fills = [int(decode(data).data[0]) for _t, data in kept]
        assert fills == [bf.image_fill(i) for i in range(plan.count("/camera/image_raw"))]  # none overwritten
        pooled = len(reader._fast._pool)
        del kept
        for _ in range(3):  # views gone: the same buffers serve every later pass
            assert sum(1 for _ in reader.iter_raw()) > 0
        assert len(reader._fast._pool) == pooled
