"""The legacy layout's byte arrays go to Parquet as binary views of the buffers they were read
into (no copy, one Arrow chunk per column and row group); the files read back exactly as
if they had been written from `large_binary` arrays."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kiln.apps.robotics.conversion import run_conversion, writers
from kiln.apps.robotics.conversion.messages import (
    BLOB_BYTES,
    BytesColumn,
    ListColumn,
    PrimColumn,
    StructColumn,
    column_array,
)
from kiln.apps.robotics.spec import auto_mapping, build_legacy_spec
from kiln.apps.robotics.spec.models import OutputSpec
from tests.apps.robotics import bagfactory as bf

pytestmark = pytest.mark.skipif(not writers.views_writable(), reason="this pyarrow cannot write binary views")

SIZES = [0, 5, 12, 13, 100, BLOB_BYTES - 1, BLOB_BYTES, BLOB_BYTES + 7]


def _payload(n: int, seed: int) -> np.ndarray:
    return (np.arange(n, dtype=np.int64) * 7 + seed).astype(np.uint8)


def test_byte_views_keep_every_size_and_reference_large_payloads_in_place():
    arrays = [_payload(n, k) for k, n in enumerate(SIZES)]
    out = column_array(BytesColumn(), arrays, list(range(len(arrays))), len(arrays) + 1, views=True)
    out.validate(full=True)
    assert out.type == pa.binary_view()
    assert out.to_pylist() == [a.tobytes() for a in arrays] + [None]
    addresses = {b.address for b in out.buffers() if b is not None}
    for a in arrays:  # payloads of BLOB_BYTES or more: the very buffer they were read into
        assert (a.ctypes.data in addresses) == (len(a) >= BLOB_BYTES)


def test_a_row_group_of_frames_is_one_chunk_of_the_read_buffers(tmp_path):
    frame = SimpleNamespace(height=2, data=_payload(300_000, 1))
    image = StructColumn([("height", PrimColumn("uint32")), ("data", BytesColumn())])
    w = writers.MessageParquetWriter(tmp_path / "x.parquet", {"cam": image}, OutputSpec(compression="none"))
    try:
        table = w._table([1, 2, 3], {"cam": [frame, frame]}, {"cam": [0, 2]})
    finally:
        w.abort()
    column = table.column("cam")
    assert column.num_chunks == 1
    data = column.chunk(0).field("data")
    assert frame.data.ctypes.data in {b.address for b in data.buffers() if b is not None}


def _write(path, columns, rows):
    w = writers.MessageParquetWriter(path, columns, OutputSpec(compression="none"))
    for t, values in rows:
        w.add(t, values, {})
    assert w.close() == len(rows)
    return pq.read_table(path)


def test_nested_byte_arrays_and_row_groups_past_one_write_batch(tmp_path, monkeypatch):
    """Structs with byte arrays across more than 1,024 rows (pyarrow cannot cut views below a
    struct into write batches), lists of messages with byte arrays (nor below a list), nulls."""
    blob = StructColumn([("id", PrimColumn("int32")), ("data", BytesColumn())])
    columns = {"blob": blob, "items": ListColumn(StructColumn([("data", BytesColumn())]))}
    rows = []
    for i in range(3000):
        values = {
            "blob": None
            if i % 5 == 0
            else SimpleNamespace(id=i, data=_payload(BLOB_BYTES + 1 if i % 97 == 1 else 20, i)),
            "items": None
            if i % 3
            else [SimpleNamespace(data=_payload(i % 40, i)), SimpleNamespace(data=_payload(3, 0))],
        }
        rows.append((i, values))
    monkeypatch.setattr(writers, "ROW_GROUP_BYTES", 1 << 40)  # one row group of 3,000 rows
    got = _write(tmp_path / "views.parquet", columns, rows)
    assert got.schema.field("blob").type.field("data").type == pa.large_binary()
    expected = [
        {
            "blob": None if v["blob"] is None else {"id": v["blob"].id, "data": v["blob"].data.tobytes()},
            "items": None if v["items"] is None else [{"data": x.data.tobytes()} for x in v["items"]],
        }
        for _t, v in rows
    ]
    assert got.select(["blob", "items"]).to_pylist() == expected
    monkeypatch.setattr(writers, "views_writable", lambda: False)  # the copying path, same file content
    assert _write(tmp_path / "copied.parquet", columns, rows).equals(got)


def test_default_conversion_reads_back_the_same_with_and_without_views(tmp_path, monkeypatch):
    # 320x240 frames (230 KB, views of the read buffers) among 400 Hz IMU rows: row groups of
    # more than 1,024 rows whose image column holds views
    topics = [
        bf.TopicPlan("/camera/image_raw", bf.IMAGE, 5.0),
        bf.TopicPlan("/imu", bf.IMU, 400.0, offset_ns=1_000_000),
    ]
    plan = bf.RecordingPlan(duration_s=4.0, image_size=(320, 240), topics=topics)
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", plan)
    spec = build_legacy_spec(
        auto_mapping([p.topic for p in topics]), output={"format": "parquet", "compression": "none"}
    )

    def convert(out):
        result = run_conversion(path, spec, tmp_path / out)
        return next(f.path for f in result.files if f.role == "dataset")

    viewed_path = convert("views")
    monkeypatch.setattr(writers, "views_writable", lambda: False)
    viewed, copied = pq.ParquetFile(viewed_path), pq.ParquetFile(convert("copied"))
    assert viewed.metadata.row_group(0).num_rows > 1024
    assert viewed.schema_arrow == copied.schema_arrow
    assert viewed.schema_arrow.field("camera_image_raw").type.field("data").type == pa.large_binary()
    assert viewed.read().equals(copied.read())
    frames = [r for r in pq.read_table(viewed_path, columns=["camera_image_raw"]).column(0).to_pylist() if r]
    assert len(frames) == plan.count("/camera/image_raw")
    assert frames[2]["data"] == bytes([bf.image_fill(2)]) * (320 * 240 * 3)
