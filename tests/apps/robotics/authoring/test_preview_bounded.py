"""Preview reads as many messages as its rows need, whatever the recording's length
(the reference walked the whole file to return five rows)."""

from __future__ import annotations

import pytest

from kiln.apps.robotics.conversion import preview
from kiln.apps.robotics.reading.reader import RecordingReader
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import trigger_spec


@pytest.mark.parametrize("fmt", ["bag", "mcap-zstd", "db3"])
def test_messages_read_do_not_grow_with_the_file(tmp_path, monkeypatch, fmt):
    read = {"n": 0}
    real = RecordingReader.iter_raw

    def counting(self, *args, **kwargs):
        for m in real(self, *args, **kwargs):
            read["n"] += 1
            yield m

    monkeypatch.setattr(RecordingReader, "iter_raw", counting)
    suffix = {"bag": ".bag", "mcap-zstd": ".mcap", "db3": ".db3"}[fmt]
    counts = {}
    for seconds in (6.0, 60.0):
        path = bf.write_recording(tmp_path / f"r{int(seconds)}{suffix}", fmt, bf.RecordingPlan(duration_s=seconds))
        read["n"] = 0
        result = preview(path, trigger_spec(), 5)
        assert len(result.rows) == 5
        counts[seconds] = read["n"]
    total_long = sum(bf.RecordingPlan(duration_s=60.0).count(p.topic) for p in bf.RecordingPlan().topics)
    assert counts[60.0] == counts[6.0], counts  # the same rows need the same messages
    assert counts[60.0] < total_long / 5
