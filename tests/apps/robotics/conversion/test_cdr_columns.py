"""Column-wise CDR decoding of the legacy layout gives the same Arrow values and the same
Parquet files as decoding message by message, and falls back to that whenever messages do not
share one layout (other sizes, other string or sequence lengths, text that is not UTF-8)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from kiln.apps.robotics.conversion import cdr_columns, run_conversion, writers
from kiln.apps.robotics.conversion.messages import column_array, message_column
from kiln.apps.robotics.conversion.rows import Msg
from kiln.apps.robotics.reading.reader import open_recording
from kiln.apps.robotics.spec import auto_mapping, build_legacy_spec
from tests.apps.robotics import bagfactory as bf

# every kind of field, in orders that need CDR alignment after strings, bytes and sequences
ITEM = "test_msgs/msg/Item"
SAMPLE = "test_msgs/msg/Sample"
PAIR = "test_msgs/msg/Pair"  # aligned to 8 before, to 1 after: each array element is aligned again
DEFINITIONS = {
    PAIR: "float64 value\nuint8 flag",
    ITEM: "uint8 flag\nfloat64 weight\nstring label\nint16[] codes",
    SAMPLE: (
        "std_msgs/Header header\nbool ok\nint8 small\nuint64 big\nfloat32 ratio\nstring name\n"
        "float64[3] position\nbool[2] switches\nuint8[4] tag\nint16[] readings\nstring[] words\n"
        "string[2] pair\nItem[] items\nItem[2] fixed_items\nPair[2] pairs\nuint8[] blob\nfloat64 last"
    ),
}


def _store():
    store = get_typestore(Stores.ROS2_HUMBLE)
    types = {}
    for name, text in DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def _sample(store, i: int, *, name: str = "sensor", words: int = 2, blob: int = 5, label: str = "lb") -> object:
    T = store.types
    item = T[ITEM]
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=i, nanosec=7 * i), frame_id="map")
    return T[SAMPLE](
        header=header,
        ok=i % 2 == 0,
        small=-i,
        big=2**63 + i,
        ratio=i / 3,
        name=name,
        position=np.array([i, -i, 0.5 * i], dtype=np.float64),
        switches=np.array([True, i % 3 == 0]),
        tag=np.array([i, 1, 2, 3], dtype=np.uint8),
        readings=np.arange(3, dtype=np.int16) * i,
        words=[f"w{k}" for k in range(words)],
        pair=["é" * (1 + k) for k in range(2)],
        items=[item(flag=k, weight=k * 0.25, label=label, codes=np.array([k, i], dtype=np.int16)) for k in range(2)],
        fixed_items=[item(flag=1, weight=-1.5, label=label, codes=np.zeros(0, dtype=np.int16)) for _k in range(2)],
        pairs=[T[PAIR](value=i + 0.5 * k, flag=k) for k in range(2)],
        blob=np.full(blob, i, dtype=np.uint8),
        last=float(i) * 1e9,
    )


def _decoder(store, msgtype: str):
    def decode(m: Msg):
        data = m.data
        try:
            if data[0] != 0 or data[1] != 1:
                raise ValueError("not little-endian CDR")
            return store.deserialize_cdr(bytes(data), msgtype)
        except Exception:
            return None

    return decode


def _columns(store, payloads: list[bytes], rows: list[int], n: int, views: bool):
    """(column-wise result, per-message result, whether the column-wise path was taken)."""
    decode, missing = _decoder(store, SAMPLE), []
    column = message_column(store, SAMPLE)
    fast = cdr_columns.CdrTopicColumn(column, store, SAMPLE, lambda m: m.value(), lambda: missing.append(1))
    msgs = [Msg("/s", t, p, SAMPLE, decode) for t, p in enumerate(payloads)]
    try:
        fast._columnwise(list(msgs), rows, n, views)
        columnwise = True
    except cdr_columns._Unfit:
        columnwise = False
    got = fast.array(msgs, rows, n, views)
    decoded = [(decode(Msg("/s", 0, p, SAMPLE, decode)), r) for p, r in zip(payloads, rows, strict=True)]
    kept = [(v, r) for v, r in decoded if v is not None]
    want = column_array(column, [v for v, _r in kept], [r for _v, r in kept], n, views)
    assert len(missing) == len(payloads) - len(kept)
    return got, want, columnwise


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("rows", [[0, 1, 2, 3], [1, 4, 6], [5]])
def test_messages_of_one_layout_are_read_column_wise_with_the_same_values(rows, views):
    if views and not writers.views_writable():
        pytest.skip("this pyarrow cannot write binary views")
    store = _store()
    payloads = [bytes(store.serialize_cdr(_sample(store, i), SAMPLE)) for i in range(len(rows))]
    got, want, columnwise = _columns(store, payloads, rows, 8 if len(rows) < 4 else 4, views)
    assert columnwise
    got.validate(full=True)
    assert got.type == want.type
    assert got.equals(want)
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize(
    "variants",
    [
        # other sizes: a longer name, more words, a larger blob
        [{}, {"name": "a much longer sensor name"}, {"words": 5}, {"blob": 0}],
        # the same size, other lengths: "ab" and "a" both pad to the same 4-byte boundary
        [{"label": "ab"}, {"label": "a"}, {"label": "ab"}],
    ],
)
def test_messages_of_several_layouts_are_decoded_one_by_one(variants):
    store = _store()
    payloads = [bytes(store.serialize_cdr(_sample(store, i, **v), SAMPLE)) for i, v in enumerate(variants)]
    if variants[1] == {"label": "a"}:
        assert len({len(p) for p in payloads}) == 1  # only the length prefixes tell the layouts apart
    got, want, columnwise = _columns(store, payloads, list(range(len(payloads))), len(payloads), False)
    assert not columnwise
    assert got.equals(want)


def test_text_that_is_not_utf8_fails_its_message_as_before():
    store = _store()
    payloads = [bytearray(store.serialize_cdr(_sample(store, i, name="abc"), SAMPLE)) for i in range(3)]
    at = bytes(payloads[1]).index(b"abc")
    payloads[1][at] = 0xFF  # same layout, but rosbags cannot decode the name
    got, want, columnwise = _columns(store, [bytes(p) for p in payloads], [0, 1, 2], 3, False)
    assert not columnwise
    assert got.equals(want)
    assert got.null_count == 1


def test_big_endian_payloads_are_decoded_one_by_one():
    store = _store()
    payloads = [bytearray(store.serialize_cdr(_sample(store, i), SAMPLE)) for i in range(2)]
    payloads[0][1] = 0  # claims big endian: the per-message decoder's business
    _got, _want, columnwise = _columns(store, [bytes(p) for p in payloads], [0, 1], 2, False)
    assert not columnwise


def test_types_the_walk_does_not_read_stay_per_message():
    store = _store()
    store.register(get_types_from_msg("byte b\nchar c", "test_msgs/msg/Scalars"))
    assert cdr_columns.supported(store, SAMPLE)
    assert cdr_columns.supported(store, bf.ODOM)
    assert not cdr_columns.supported(store, "test_msgs/msg/Scalars")


@pytest.mark.parametrize("fmt", ["mcap", "mcap-zstd", "db3", "dir-mcap", "bag"])
def test_default_conversion_files_are_the_same_column_wise_and_message_by_message(tmp_path, monkeypatch, fmt):
    # small images and clouds too (8x6 pixels, 16 points): every topic of the file goes column-wise,
    # the status strings (of several lengths) partly message by message
    plan = bf.RecordingPlan(duration_s=3.0)
    path = bf.write_recording(tmp_path / ("rec.bag" if fmt == "bag" else "rec.mcap"), fmt, plan)
    with open_recording(path) as reader:
        topics = list(reader.topics)
        assert reader.cdr == (fmt != "bag")  # ROS1 serialization is always decoded message by message
    spec = build_legacy_spec(auto_mapping(topics), output={"format": "parquet", "compression": "none"})
    taken = []
    columnwise = cdr_columns.CdrTopicColumn._columnwise

    def counted(self, msgs, *args):
        out = columnwise(self, msgs, *args)
        taken.append(self.msgtype)
        return out

    monkeypatch.setattr(cdr_columns.CdrTopicColumn, "_columnwise", counted)
    fast = run_conversion(path, spec, tmp_path / "fast")
    assert {bf.IMU, bf.ODOM, bf.IMAGE, bf.CLOUD} <= set(taken) if fmt != "bag" else not taken
    monkeypatch.setattr(cdr_columns, "supported", lambda store, msgtype: False)
    slow = run_conversion(path, spec, tmp_path / "slow")
    (a,) = [f.path for f in fast.files if f.role == "dataset"]
    (b,) = [f.path for f in slow.files if f.role == "dataset"]
    assert fast.rows_written == slow.rows_written > 0
    assert pq.read_schema(a) == pq.read_schema(b)
    assert pq.read_table(a).equals(pq.read_table(b))
    assert filecmp.cmp(a, b, shallow=False)
    assert fast.episodes[0]["rows_written"] == slow.episodes[0]["rows_written"]
    (fm,) = [json.loads(Path(f.path).read_text()) for f in fast.files if f.role == "manifest"]
    (sm,) = [json.loads(Path(f.path).read_text()) for f in slow.files if f.role == "manifest"]
    counts = fm["conversion"]["missing_feature_counts"]
    assert counts == sm["conversion"]["missing_feature_counts"]
    assert counts and all(0 < c < fast.rows_written for c in counts.values())  # every topic misses some rows


def test_a_topic_mapped_twice_gives_the_same_row_groups_both_ways(tmp_path, monkeypatch):
    # row groups close on bytes: a message mapped to two columns counts its payload once either way
    monkeypatch.setattr(writers, "ROW_GROUP_BYTES", 2048)
    path = bf.write_recording(tmp_path / "rec.mcap", "mcap", bf.RecordingPlan(duration_s=1.0))
    mapping = {"imu": ["/imu"], "imu_again": ["/imu"], "odom": ["/odom"], "status": ["/status"]}
    spec = build_legacy_spec(mapping, output={"format": "parquet", "compression": "none"})
    fast = run_conversion(path, spec, tmp_path / "fast")
    monkeypatch.setattr(cdr_columns, "supported", lambda store, msgtype: False)
    slow = run_conversion(path, spec, tmp_path / "slow")
    (a,) = [f.path for f in fast.files if f.role == "dataset"]
    (b,) = [f.path for f in slow.files if f.role == "dataset"]
    assert pq.ParquetFile(a).num_row_groups == pq.ParquetFile(b).num_row_groups > 2
    table = pq.read_table(a)
    assert table.column("imu").to_pylist() == table.column("imu_again").to_pylist()
    assert filecmp.cmp(a, b, shallow=False)
