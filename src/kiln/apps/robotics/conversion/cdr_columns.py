"""Column-wise CDR decoding of a legacy topic column (ROS2 recordings).

Decoding a small message with rosbags costs 6-10 us (a generated function per type, a Python
object per nested message) and turning the decoded objects back into columns costs about as
much again: for a 200 Hz IMU that is most of the decoding thread's time per topic. Yet the
messages of a topic nearly always have one layout: the same size and the same string and
sequence lengths, so every field lies at the same offset in every message.

`CdrTopicColumn` takes a row group's raw messages of a topic. When they all have the size of
the first and every length prefix of the first (string lengths, sequence counts, at the
offsets the first message's walk found them; a layout is fixed by them), each leaf is read for
every message at once: the payloads are joined into an (n, size) byte matrix and a leaf's
bytes are a column slice of it, viewed as the leaf's dtype. The walk follows rosbags' own CDR
decoder (`rosbags.serde.cdr.generate_deserialize_cdr`) step by step, alignment included, so
offsets are where rosbags reads. Anything else — messages of other sizes or lengths, payloads
of BLOB_BYTES or more (images, clouds: few per row group, and referenced in place by the
per-message path), big-endian data, strings that are not UTF-8, types with a field this walk
does not read the way rosbags does — goes through the per-message decoder as before, with its
failure policy. Both paths give the same Arrow values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from kiln.apps.robotics.conversion.messages import (
    BLOB_BYTES,
    BytesColumn,
    Column,
    ListColumn,
    PrimColumn,
    StrColumn,
    StructColumn,
    column_array,
    offsets_buffer,
    scatter_rows,
    validity_bitmap,
    with_validity,
)

_SIZES = {"bool": 1, "int8": 1, "uint8": 1, "byte": 1, "char": 1, "int16": 2, "uint16": 2, "int32": 4}
_SIZES.update({"uint32": 4, "int64": 8, "uint64": 8, "float32": 4, "float64": 8})
_SCALARS = set(_SIZES) - {"byte", "char"}  # rosbags reads scalar byte/char with its own signedness
_HEADER = 4  # CDR encapsulation: 0x00, 0x01 (little endian), two option bytes
_MAX_DEPTH = 32


class _Unfit(Exception):
    """The batch (or its first message) cannot be read column-wise: decode message by message."""


class _Node:
    """Where one column node's values lie in the first message: one entry per occurrence."""

    def __init__(self, column: Column):
        self.column = column
        self.at: list[
            Any
        ] = []  # PrimColumn: byte offsets; StrColumn, BytesColumn: (offset, length); ListColumn: counts
        if isinstance(column, StructColumn):
            self.children = [_Node(c) for _n, c in column.fields]
        elif isinstance(column, ListColumn):
            self.item = _Node(column.item)


def supported(store: Any, msgtype: str) -> bool:
    """Whether every field of the type is one the column-wise walk reads as rosbags does."""

    def ok(desc: Any, depth: int) -> bool:
        kind, spec = int(desc[0]), desc[1]
        if depth > _MAX_DEPTH:
            return False
        if kind == 1:
            return spec[0] == "string" or spec[0] in _SCALARS
        if kind == 2:
            fields = store.fielddefs.get(spec, (None, []))[1]
            return bool(fields) and all(ok(d, depth + 1) for _f, d in fields)
        elem = spec[0]
        if int(elem[0]) == 1:
            return elem[1][0] == "string" or elem[1][0] in _SIZES
        return ok(elem, depth + 1)

    return ok((2, msgtype), 0)


class _Walk:
    """Reads the first message of a batch the way rosbags' generated CDR decoder does, noting
    where each leaf lies (`_Node.at`), every length prefix (`pins`) and every string
    terminator (`zeros`). Offsets are into the payload, encapsulation header included."""

    def __init__(self, store: Any, data: memoryview, max_sequence: int):
        self.defs, self.data, self.max_sequence = store.fielddefs, data, max_sequence
        self.pins: list[tuple[int, int]] = []
        self.zeros: list[int] = []

    def _align(self, desc: Any) -> int:  # rosbags.serde.utils.align
        kind, spec = int(desc[0]), desc[1]
        if kind == 1:
            return 4 if spec[0] == "string" else _SIZES[spec[0]]
        if kind == 2:
            return self._align(self.defs[spec][1][0][1])
        return self._align(spec[0]) if kind == 3 else 4

    def _align_after(self, desc: Any) -> int:  # rosbags.serde.utils.align_after
        kind, spec = int(desc[0]), desc[1]
        if kind == 1:
            return 1 if spec[0] == "string" else _SIZES[spec[0]]
        if kind == 2:
            return self._align_after(self.defs[spec][1][-1][1])
        return self._align_after(spec[0]) if kind == 3 else min(4, self._align_after(spec[0]))

    def _u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.data):
            raise _Unfit
        value = int.from_bytes(self.data[pos : pos + 4], "little")
        self.pins.append((pos + _HEADER, value))
        return value

    def _string(self, pos: int, node: _Node) -> int:
        length = self._u32(pos)
        end = pos + 4 + length
        if length < 1 or end > len(self.data) or self.data[end - 1] != 0:  # rosbags' check_string
            raise _Unfit
        node.at.append((pos + 4 + _HEADER, length - 1))
        self.zeros.append(end - 1 + _HEADER)
        return end

    def _leaves(self, node: _Node, pos: int, count: int, size: int) -> None:
        if pos + count * size > len(self.data):
            raise _Unfit
        if isinstance(node.column, BytesColumn):
            node.at.append((pos + _HEADER, count * size))
        else:
            node.at.append(count)
            node.item.at.extend(range(pos + _HEADER, pos + _HEADER + count * size, size))

    def message(self, name: str, pos: int, node: _Node) -> int:
        fields = self.defs[name][1]
        aligned = 8
        for i, (_fname, desc) in enumerate(fields):
            kind, spec = int(desc[0]), desc[1]
            child = node.children[i]
            if kind == 2:
                pos = self.message(spec, pos, child)
                aligned = self._align_after(desc)
            elif kind == 1 and spec[0] == "string":
                pos = self._string(pos, child)
                aligned = 1
            elif kind == 1:
                if pos + _SIZES[spec[0]] > len(self.data):
                    raise _Unfit
                child.at.append(pos + _HEADER)
                pos += _SIZES[spec[0]]
                aligned = _SIZES[spec[0]]
            elif kind == 3:
                pos, aligned = self._array(spec[0], spec[1], pos, child)
            else:
                pos, aligned = self._sequence(spec[0], pos, child, aligned)
            if i + 1 < len(fields) and aligned < (a := self._align(fields[i + 1][1])):
                pos = (pos + a - 1) & -a
                aligned = a
        return pos

    def _array(self, elem: Any, length: int, pos: int, node: _Node) -> tuple[int, int]:
        kind, spec = int(elem[0]), elem[1]
        if kind == 1 and spec[0] != "string":
            self._leaves(node, pos, length, _SIZES[spec[0]])
            return pos + length * _SIZES[spec[0]], _SIZES[spec[0]]
        node.at.append(length)
        if kind == 1:  # strings
            for idx in range(length):
                if idx:
                    pos = (pos + 3) & -4
                pos = self._string(pos, node.item)
            return pos, 1
        before, after = self._align(elem), self._align_after(elem)
        for _ in range(length):
            if before > after:
                pos = (pos + before - 1) & -before
            pos = self.message(spec, pos, node.item)
        return pos, after

    def _sequence(self, elem: Any, pos: int, node: _Node, aligned: int) -> tuple[int, int]:
        size = self._u32(pos)
        pos += 4
        kind, spec = int(elem[0]), elem[1]
        minimum = 5 if kind == 1 and spec[0] == "string" else _SIZES[spec[0]] if kind == 1 else 1
        if pos + size * minimum > len(self.data) or size > self.max_sequence:  # rosbags' check_sequence
            raise _Unfit
        aligned = 4
        if kind == 1 and spec[0] != "string":
            before = _SIZES[spec[0]]
            if aligned < before and size:
                pos = (pos + before - 1) & -before
            self._leaves(node, pos, size, before)
            return pos + size * before, min(4, before)
        node.at.append(size)
        if kind == 1:  # strings
            for _ in range(size):
                pos = (pos + 3) & -4
                pos = self._string(pos, node.item)
            return pos, 1
        before = self._align(elem)
        for _ in range(size):
            pos = (pos + before - 1) & -before
            pos = self.message(spec, pos, node.item)
        return pos, min(4, self._align_after(elem))


def _byte_columns(matrix: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Every message's bytes of the spans (offset, length), message after message."""
    index = np.concatenate([np.arange(o, o + n) for o, n in spans]) if spans else np.zeros(0, np.int64)
    return np.ascontiguousarray(matrix[:, index]).reshape(-1)


def _build(node: _Node, matrix: np.ndarray, rows: np.ndarray | None, n: int, views: bool, validity: Any) -> pa.Array:
    """The array `node.column.build` would give for these messages (see messages.py)."""
    col, m = node.column, len(matrix)
    if isinstance(col, PrimColumn):
        spans = [(o, np.dtype(col._np).itemsize) for o in node.at]
        raw = _byte_columns(matrix, spans)
        dense = raw != 0 if col._np is np.bool_ else raw.view(np.dtype(col._np).newbyteorder("<")).astype(col._np)
        return with_validity(pa.array(scatter_rows(dense, rows, n), type=col.type), validity)
    if isinstance(col, StrColumn | BytesColumn):
        lengths = np.tile(np.array([length for _o, length in node.at], dtype=np.int64), m)
        data = _byte_columns(matrix, node.at)
        if isinstance(col, BytesColumn):
            bounds = np.concatenate([[0], np.cumsum(lengths)])
            values = [data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            return col.build(values, rows, n, views, validity)
        dense = pa.Array.from_buffers(pa.string(), len(lengths), [None, _offsets32(lengths), pa.py_buffer(data)])
        try:
            dense.validate(full=True)  # rosbags decodes strings as UTF-8 and fails on anything else
        except pa.ArrowInvalid:
            raise _Unfit from None
        if rows is None and validity is None:
            return dense
        offsets = _offsets32(scatter_rows(lengths, rows, n))
        return pa.Array.from_buffers(pa.string(), n, [validity, offsets, pa.py_buffer(data)])
    if isinstance(col, ListColumn):
        lengths = np.tile(np.array(node.at, dtype=np.int64), m)
        total = int(lengths.sum())
        flat = _build(node.item, matrix, None, total, False, None)
        return pa.Array.from_buffers(
            col.type, n, [validity, offsets_buffer(scatter_rows(lengths, rows, n))], children=[flat]
        )
    assert isinstance(col, StructColumn)
    children = [_build(child, matrix, rows, n, views, None) for child in node.children]
    return pa.Array.from_buffers(col.write_type if views else col.type, n, [validity], children=children)


def _offsets32(lengths: np.ndarray) -> pa.Buffer:
    out = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=out[1:])
    return pa.py_buffer(out)


class CdrTopicColumn(Column):
    """A topic column fed the topic's raw messages (`Msg`), decoded when its row group is
    built: column-wise when they share one layout, else message by message through `decode`
    (whose failures are null values, counted by `on_missing`)."""

    def __init__(
        self,
        column: Column,
        store: Any,
        msgtype: str,
        decode: Callable[[Any], Any],
        on_missing: Callable[[], None],
    ):
        self.column, self.store, self.msgtype = column, store, msgtype
        self.type, self.write_type = column.type, column.write_type
        self._decode, self._on_missing = decode, on_missing
        self._max_sequence = getattr(store, "max_sequence_length", 2**32)

    def array(self, msgs: list[Any], rows: list[int], n: int, views: bool = False) -> pa.Array:
        try:
            return self._columnwise(msgs, rows, n, views)
        except _Unfit:
            pass
        values, kept = [], []
        for m, row in zip(msgs, rows, strict=True):
            v = self._decode(m)
            if v is None:
                self._on_missing()
            else:
                values.append(v)
                kept.append(row)
        return column_array(self.column, values, kept, n, views)

    def _columnwise(self, msgs: list[Any], rows: list[int], n: int, views: bool) -> pa.Array:
        if not msgs:
            raise _Unfit
        payloads = [m.data for m in msgs]
        size = len(payloads[0]) if payloads[0] is not None else 0
        if not _HEADER < size < BLOB_BYTES:
            raise _Unfit
        for m, p in zip(msgs, payloads, strict=True):
            if p is None or len(p) != size or m.msgtype != self.msgtype:
                raise _Unfit
        first = memoryview(payloads[0]).cast("B")
        if first[0] != 0 or first[1] != 1:
            raise _Unfit
        node = _Node(self.column)
        walk = _Walk(self.store, first[_HEADER:], self._max_sequence)
        walk.message(self.msgtype, 0, node)
        matrix = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(payloads), size)
        if not ((matrix[:, 0] == 0) & (matrix[:, 1] == 1)).all():
            raise _Unfit
        if walk.pins:
            at = np.array([o for o, _v in walk.pins], dtype=np.int64)
            prefixes = matrix[:, (at[:, None] + np.arange(4)).reshape(-1)].copy().view("<u4")
            if not (prefixes == np.array([v for _o, v in walk.pins], dtype="<u4")).all():
                raise _Unfit
        if walk.zeros and matrix[:, walk.zeros].any():
            raise _Unfit
        if len(msgs) == n:
            return _build(node, matrix, None, n, views, None)
        at_rows = np.asarray(rows, dtype=np.int64)
        present = np.zeros(n, dtype=bool)
        present[at_rows] = True
        return _build(node, matrix, at_rows, n, views, validity_bitmap(present))
