"""What the default (legacy) Parquet conversion costs beyond its work: no module loaded on the
way that a server would not need, and the read-ahead thread gone as soon as reading stops."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kiln.apps.robotics.reading.reader import RecordingError, open_recording
from tests.apps.robotics import bagfactory as bf

PLAN = bf.RecordingPlan(duration_s=3.0, image_size=(640, 480))  # ~9 MB a second: several chunks
ROOT = Path(__file__).resolve().parents[4]


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mcap-read-ahead"]


def test_read_ahead_stops_with_its_reader(tmp_path):
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", PLAN)
    with open_recording(path) as reader:
        assert len(reader._fast.chunks) > 3
        stream = reader.iter_raw()
        first = [next(stream) for _ in range(5)]
        assert _read_ahead_threads()  # reading ahead while the caller decodes
        stream.close()  # the caller stops early (a preview): the thread ends with it
        assert not _read_ahead_threads() and len(first) == 5
        assert sum(1 for _ in reader.iter_raw()) == sum(PLAN.count(p.topic) for p in PLAN.topics)
    assert not _read_ahead_threads()


def test_closing_a_reader_stops_a_stream_left_unfinished(tmp_path):
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", PLAN)
    reader = open_recording(path)
    stream = reader.iter_raw()
    next(stream)
    reader.close()  # the stream is neither finished nor closed
    deadline = time.monotonic() + 5
    while _read_ahead_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _read_ahead_threads()
    with pytest.raises(RecordingError):
        for _ in stream:
            pass


def test_read_ahead_errors_reach_the_caller(tmp_path):
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", PLAN)
    with open_recording(path) as reader:
        stream = reader.iter_raw()
        next(stream)
        os.truncate(path, path.stat().st_size // 3)  # truncated while it is read
        with pytest.raises(RecordingError, match="recording changed while it was read"):
            for _ in stream:
                pass
    assert not _read_ahead_threads()


def test_the_default_conversion_loads_no_pyarrow_compute(tmp_path):
    # pyarrow.compute costs ~0.1 s of CPU to import (a third of converting 200 MB); building
    # validity bitmaps directly keeps a conversion from loading it
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", bf.RecordingPlan(duration_s=1.0))
    code = textwrap.dedent(f"""
        import sys
        from kiln.apps.robotics.conversion import run_conversion
        from kiln.apps.robotics.spec.migrate import build_legacy_spec
        mapping = {{t: [t] for t in ("/camera/image_raw", "/imu", "/odom", "/lidar/points", "/status")}}
        spec = build_legacy_spec(mapping, output={{"format": "parquet", "compression": "none"}})
        assert run_conversion({str(path)!r}, spec, {str(tmp_path / "out")!r}).rows_written > 0
        print("pyarrow.compute" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
