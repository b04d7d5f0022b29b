"""The legacy layout's topic columns are built from the messages a row group has of each topic
(never from a row of Nones per row), with fewer garbage collections while converting; the
result reads back exactly as the rows were given."""

from __future__ import annotations

import gc
import threading
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from kiln.apps.robotics.conversion import collector, run_conversion, writers
from kiln.apps.robotics.conversion.messages import (
    BLOB_BYTES,
    BytesColumn,
    ListColumn,
    PrimColumn,
    StrColumn,
    StructColumn,
    column_array,
    message_column,
)
from kiln.apps.robotics.spec import auto_mapping, build_legacy_spec
from kiln.apps.robotics.spec.models import OutputSpec
from tests.apps.robotics import bagfactory as bf

POINT = StructColumn([("x", PrimColumn("float64")), ("label", StrColumn())])
MESSAGE = StructColumn(
    [
        ("stamp", StructColumn([("sec", PrimColumn("int32")), ("nanosec", PrimColumn("uint32"))])),
        ("ok", PrimColumn("bool")),
        ("frame_id", StrColumn()),
        ("data", BytesColumn()),
        ("covariance", ListColumn(PrimColumn("float64"))),
        ("names", ListColumn(StrColumn())),
        ("points", ListColumn(POINT)),
        ("empty", StructColumn([])),
    ]
)


def _message(i: int) -> SimpleNamespace:
    size = BLOB_BYTES + i if i % 4 == 1 else i % 30  # large (referenced) and small (copied) payloads
    return SimpleNamespace(
        stamp=SimpleNamespace(sec=i, nanosec=1000 * i),
        ok=i % 2 == 0,
        frame_id=f"frame-{i}" * (i % 3),
        data=(np.arange(size) * 3 + i).astype(np.uint8),
        covariance=np.arange(i % 4, dtype=np.float64) + i,
        names=[f"n{k}" for k in range(i % 3)],
        points=[SimpleNamespace(x=float(i + k), label=str(k)) for k in range(i % 3)],
        empty=SimpleNamespace(),
    )


def _expected(m: SimpleNamespace | None) -> dict | None:
    if m is None:
        return None
    return {
        "stamp": {"sec": m.stamp.sec, "nanosec": m.stamp.nanosec},
        "ok": m.ok,
        "frame_id": m.frame_id,
        "data": m.data.tobytes(),
        "covariance": m.covariance.tolist(),
        "names": m.names,
        "points": [{"x": p.x, "label": p.label} for p in m.points],
        "empty": {"_": None},
    }


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("rows", [[], [0], [2, 3, 7], [0, 1, 2, 3, 4, 5, 6, 7, 8], [8]])
def test_a_topic_column_holds_its_messages_at_their_rows_and_nulls_elsewhere(rows, views):
    if views and not writers.views_writable():
        pytest.skip("this pyarrow cannot write binary views")
    n = 9
    messages = {r: _message(r) for r in rows}
    column = column_array(MESSAGE, [messages[r] for r in rows], rows, n, views=views)
    column.validate(full=True)
    assert column.type == (MESSAGE.write_type if views else MESSAGE.type)
    assert column.null_count == n - len(rows)
    if views:  # what the file holds: the declared large_binary type
        column = column.cast(MESSAGE.type)
    assert column.to_pylist() == [_expected(messages.get(r)) for r in range(n)]


def test_fields_named_after_python_keywords_keep_their_values():
    # rosbags keeps a field `from` in the attribute `from_`; the column keeps the field's name
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg("int32 from\nuint8 data", "test_msgs/msg/Keyword"))
    message = store.types["test_msgs/msg/Keyword"](from_=7, data=3)
    column = column_array(message_column(store, "test_msgs/msg/Keyword"), [message], [1], 2)
    assert column.type.field(0).name == "from"
    assert column.to_pylist() == [None, {"from": 7, "data": 3}]


def test_a_message_of_another_type_is_a_clear_error():
    with pytest.raises(ValueError, match="does not have the fields"):
        column_array(POINT, [SimpleNamespace(x=1.0)], [0], 1)


def test_rows_written_sparse_and_dense_read_back(tmp_path):
    columns = {"a": MESSAGE, "b": StructColumn([("v", PrimColumn("int64"))])}
    rows = []
    for i in range(600):  # "a" in a few rows, "b" in most, some rows with neither
        values = {}
        if i % 7 == 0:
            values["a"] = _message(i)
        if i % 5:
            values["b"] = SimpleNamespace(v=i)
        rows.append((i, values))
    w = writers.MessageParquetWriter(tmp_path / "x.parquet", columns, OutputSpec(compression="none"))
    for t, values in rows:
        w.add(t, values, {})
    assert w.close() == len(rows)
    got = pq.read_table(tmp_path / "x.parquet")
    assert got.column("timestamp_ns").to_pylist() == list(range(600))
    assert got.column("a").to_pylist() == [_expected(v.get("a")) for _t, v in rows]
    assert got.column("b").to_pylist() == [None if "b" not in v else {"v": v["b"].v} for _t, v in rows]


def test_fewer_collections_while_converting_and_the_thresholds_restored(tmp_path):
    topics = [bf.TopicPlan("/camera/image_raw", bf.IMAGE, 5.0), bf.TopicPlan("/imu", bf.IMU, 200.0)]
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", bf.RecordingPlan(duration_s=2.0, topics=topics))
    spec = build_legacy_spec(
        auto_mapping([t.topic for t in topics]), output={"format": "parquet", "compression": "none"}
    )
    before = gc.get_threshold()
    seen = []
    run_conversion(path, spec, tmp_path / "out", progress=lambda f, m: seen.append(gc.get_threshold()[0]))
    assert max(seen) >= collector.CONVERSION_GEN0_THRESHOLD  # while the rows were converted
    assert gc.get_threshold() == before


def test_collector_thresholds_count_concurrent_conversions():
    before = gc.get_threshold()
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector.fewer_collections():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with collector.fewer_collections():
        thread.start()
        entered.wait(10)
    assert gc.get_threshold()[0] == collector.CONVERSION_GEN0_THRESHOLD  # the other one still runs
    release.set()
    thread.join()
    assert gc.get_threshold() == before
    gc.set_threshold(0)  # automatic collection turned off stays off
    try:
        with collector.fewer_collections():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_a_conversion_into_a_folder_reached_through_a_symlink(tmp_path):
    topics = [bf.TopicPlan("/imu", bf.IMU, 50.0)]
    plan = bf.RecordingPlan(duration_s=1.0, topics=topics)
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", plan)
    spec = build_legacy_spec(auto_mapping(["/imu"]), output={"format": "parquet", "compression": "none"})
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    result = run_conversion(path, spec, tmp_path / "link" / "run")
    assert sorted(f.relative_path for f in result.files) == [
        "episode_0001.manifest.json",
        "episode_0001.parquet",
        "episode_0001.report.md",
    ]
    assert pq.read_table(tmp_path / "real" / "run" / "episode_0001.parquet").num_rows == plan.count("/imu")
    assert pa.types.is_struct(pq.read_schema(tmp_path / "real" / "run" / "episode_0001.parquet").field("imu").type)
