"""Whole ROS messages as typed Arrow columns (the legacy per-topic Parquet layout).

`message_column(store, msgtype)` compiles a message type's field definitions (rosbags'
typestore) into a column builder: nested messages become structs, numeric arrays lists,
strings strings, and byte arrays (`uint8[]`, `int8[]`, e.g. image or cloud `data`) ONE
binary value each — never a list of numbers, never base64. Builders work column-wise over
the messages a row group has of a topic (`column_array`: null in the rows without one, which
are never visited, so a sparse topic costs what its messages cost). `views=True` gives byte
arrays as binary views (`write_type`): a large payload stays in the buffer it was read into,
so a row group's payload bytes are never copied before Parquet encodes them.
`message_nbytes` sizes a decoded message for row-group byte bounds.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any

import numpy as np
import pyarrow as pa

try:  # how rosbags names a field's attribute (keywords get a trailing underscore)
    from rosbags.typesys.base import normalize_fieldname
except ImportError:  # pragma: no cover - a rosbags without it
    normalize_fieldname = None

_NUMERIC = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
_PRIMS: dict[str, tuple[pa.DataType, Any]] = {n: (pa.from_numpy_dtype(np.dtype(n)), np.dtype(n).type) for n in _NUMERIC}
_PRIMS.update(dict.fromkeys(("byte", "char"), _PRIMS["uint8"]))  # ROS aliases of uint8
_BYTES = ("uint8", "int8", "byte", "char")
_EMPTY = np.zeros(0, dtype=np.uint8)
_MAX_DEPTH = 32
Rows = np.ndarray | None  # row indices of the values in their column (None: every row)
Validity = pa.Buffer | None  # an Arrow null bitmap (None: no nulls)


class Column:
    type: pa.DataType  # the declared type: what the file's readers get back
    write_type: pa.DataType  # what `build(views=True)` returns: byte arrays as binary views

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        """An array of `n` rows holding `values` (never None) at the row indices `rows` (every
        row when `rows` is None), of `type`, or of `write_type` with `views`. The other rows
        hold placeholders (zero, empty) that `validity` (or a null parent) marks null: only the
        messages present are visited, however sparse a topic is among the row group's rows."""
        raise NotImplementedError

    def array(self, values: list[Any], rows: list[int], n: int, views: bool = False) -> pa.Array:
        """A topic's column of a row group of `n` rows (see `column_array`)."""
        return column_array(self, values, rows, n, views)


def scatter_rows(dense: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
    """`dense` spread to `n` rows at `rows` (zeros elsewhere); `dense` itself for every row."""
    if rows is None:
        return dense
    full = np.zeros((n, *dense.shape[1:]), dtype=dense.dtype)
    full[rows] = dense
    return full


def with_validity(arr: pa.Array, validity: pa.Buffer | None) -> pa.Array:
    """A flat (primitive or string) array with `validity` as its null bitmap."""
    if validity is None:
        return arr
    return pa.Array.from_buffers(arr.type, len(arr), [validity, *arr.buffers()[1:]])


class PrimColumn(Column):
    def __init__(self, name: str):
        self.type, self._np = _PRIMS[name]
        self.write_type = self.type

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        dense = np.array(values, dtype=self._np) if values else np.zeros(0, dtype=self._np)
        return with_validity(pa.array(scatter_rows(dense, rows, n), type=self.type), validity)


class StrColumn(Column):
    type = write_type = pa.string()

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        if rows is not None:
            full = [""] * n
            for row, v in zip(rows.tolist(), values, strict=True):
                full[row] = v
            values = full
        return with_validity(pa.array(values, type=self.type), validity)


def validity_bitmap(present: np.ndarray) -> pa.Buffer | None:
    """Arrow validity bitmap of a bool array of the rows holding a value (None when all do).
    Built here rather than by passing `mask=` to pyarrow, which would import pyarrow.compute
    (0.1 s) to invert it."""
    if present.all():
        return None
    return pa.py_buffer(np.packbits(present, bitorder="little"))


def offsets_buffer(lengths: np.ndarray) -> pa.Buffer:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return pa.py_buffer(out)


BLOB_BYTES = 64 * 1024  # a byte array this large is referenced where it lies, not copied (views)
_VIEW_INLINE = 12  # a binary view holds values up to 12 bytes itself
_VIEW_MAX = 2**31 - 1  # view lengths and offsets are int32


def _byte_array(v: Any) -> np.ndarray:
    return np.frombuffer(v if not isinstance(v, np.ndarray) else np.ascontiguousarray(v), dtype=np.uint8)


class BytesColumn(Column):
    """uint8/int8 arrays: one binary value per message."""

    type = pa.large_binary()
    write_type = pa.binary_view()

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        arrays = [_byte_array(v) for v in values]
        if views:
            return _byte_views(arrays, rows, n, validity)
        lengths = scatter_rows(np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays)), rows, n)
        if sum(1 for a in arrays if len(a)) == 1:  # one payload (a frame alone): no copy at all
            data = next(a for a in arrays if len(a))
        else:
            data = np.concatenate(arrays) if arrays else _EMPTY
        return pa.Array.from_buffers(self.type, n, [validity, offsets_buffer(lengths), pa.py_buffer(data)])


def _byte_views(arrays: list[np.ndarray], rows: np.ndarray | None, n: int, validity: pa.Buffer | None) -> pa.Array:
    """uint8 arrays as a binary-view array of `n` rows (the arrays at `rows`, empty values
    elsewhere): each of BLOB_BYTES or more is a data buffer of its own (the buffer it was read
    into, no copy), the smaller ones share one copied buffer.

    A view is 16 bytes: int32 length, then either the value itself (up to 12 bytes, zero
    padded) or its first 4 bytes, the int32 index of its data buffer and its int32 offset there.
    """
    m = len(arrays)
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=m)
    if m and lengths.max() > _VIEW_MAX:
        raise ValueError(f"a byte array of {int(lengths.max())} bytes is larger than a Parquet value may be")
    views = np.zeros((m, 4), dtype="<i4")  # length, prefix, buffer index, offset
    views[:, 0] = lengths
    raw = views.view(np.uint8).reshape(m, 16)
    buffers: list[pa.Buffer] = []
    small = np.flatnonzero(lengths < BLOB_BYTES)
    if len(small):
        small_len = lengths[small]
        # + 12 zero bytes: the gather of each value's first 12 bytes never runs past the end
        shared = np.concatenate([*(arrays[i] for i in small), np.zeros(_VIEW_INLINE, np.uint8)])
        starts = np.zeros(len(small), dtype=np.int64)
        np.cumsum(small_len[:-1], out=starts[1:])
        if starts[-1] > _VIEW_MAX:
            raise ValueError("a row group's small byte arrays exceed 2 GiB")
        cols = np.arange(_VIEW_INLINE)
        head = shared[starts[:, None] + cols]
        head[cols >= small_len[:, None]] = 0  # bytes past a value's end are zero
        raw[small, 4:] = head  # inline values whole; for the others, bytes 4..8 are the prefix
        outside = small_len > _VIEW_INLINE
        views[small[outside], 2] = 0
        views[small[outside], 3] = starts[outside]
        buffers.append(pa.py_buffer(shared))
    for i in np.flatnonzero(lengths >= BLOB_BYTES):
        raw[i, 4:8] = arrays[i][:4]
        views[i, 2] = len(buffers)
        buffers.append(pa.py_buffer(arrays[i]))
    return pa.Array.from_buffers(pa.binary_view(), n, [validity, pa.py_buffer(scatter_rows(views, rows, n)), *buffers])


class ListColumn(Column):
    """Variable or fixed-size arrays of primitives, strings or messages. Byte arrays inside
    them are copied, never views: pyarrow (21-26) cannot encode views below a list of structs."""

    def __init__(self, item: Column):
        self.item = item
        self.type = self.write_type = pa.large_list(item.type)

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        dense_lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        total = int(dense_lengths.sum())
        if isinstance(self.item, PrimColumn):
            flat_values = np.concatenate(values) if total else np.zeros(0, self.item._np)
            if flat_values.ndim != 1:  # arrays of another shape than one axis: flatten each
                flat_values = np.concatenate([np.asarray(v).reshape(-1) for v in values])
            flat = pa.array(flat_values.astype(self.item._np, copy=False), type=self.item.type)
        else:
            flat = self.item.build([x for v in values for x in v], None, total)
        offsets = offsets_buffer(scatter_rows(dense_lengths, rows, n))
        return pa.Array.from_buffers(self.type, n, [validity, offsets], children=[flat])


class StructColumn(Column):
    def __init__(self, fields: list[tuple[str, Column]]):
        self.fields = fields
        placeholder = [pa.field("_", pa.bool_())]
        self.type = pa.struct([pa.field(n, c.type) for n, c in fields] or placeholder)
        self.write_type = pa.struct([pa.field(n, c.write_type) for n, c in fields] or placeholder)
        # the attribute a decoded message keeps a field in (rosbags appends "_" to Python keywords)
        self._getters = [operator.attrgetter(_attribute(n)) for n, _c in fields]

    def build(self, values: list[Any], rows: Rows, n: int, views: bool = False, validity: Validity = None) -> pa.Array:
        out_type = self.write_type if views else self.type
        if not self.fields:  # an empty message (std_msgs/Empty): one placeholder child
            children = [pa.nulls(n, pa.bool_())]
        else:
            try:
                children = [
                    c.build(list(map(get, values)), rows, n, views)
                    for get, (_name, c) in zip(self._getters, self.fields, strict=True)
                ]
            except AttributeError as exc:  # a topic recorded with two message types
                raise ValueError(f"a message does not have the fields of its topic's type: {exc}") from None
        return pa.Array.from_buffers(out_type, n, [validity], children=children)


def column_array(column: Column, values: list[Any], rows: list[int], n: int, views: bool = False) -> pa.Array:
    """One topic's column of a row group of `n` rows: its messages `values` at the row
    indices `rows`, null in every other row."""
    out_type = column.write_type if views else column.type
    if not values:  # no message of this topic in the row group: one call
        return pa.nulls(n, out_type)
    if len(values) == n:
        return column.build(values, None, n, views)
    at = np.asarray(rows, dtype=np.int64)
    present = np.zeros(n, dtype=bool)
    present[at] = True
    return column.build(values, at, n, views, validity_bitmap(present))


def _attribute(field: str) -> str:
    return normalize_fieldname(field) if normalize_fieldname is not None else field


def message_column(store: Any, msgtype: str) -> Column:
    """The column builder of a message type, from the typestore's field definitions."""
    cache: dict[str, StructColumn] = {}

    def node(desc: Any, depth: int) -> Column:
        kind, spec = int(desc[0]), desc[1]
        if depth > _MAX_DEPTH:
            raise ValueError(f"message type {msgtype} nests deeper than {_MAX_DEPTH} levels")
        if kind == 1:  # BASE: (type name, string bound)
            name = spec[0]
            return PrimColumn(name) if name in _PRIMS else StrColumn()
        if kind == 2:  # NAME: a nested message type
            return struct(spec, depth + 1)
        elem = spec[0]  # ARRAY / SEQUENCE: (element descriptor, size)
        if int(elem[0]) == 1 and elem[1][0] in _BYTES:
            return BytesColumn()
        return ListColumn(node(elem, depth + 1))

    def struct(name: str, depth: int) -> StructColumn:
        if name not in cache:
            _consts, fields = store.fielddefs[name]
            cache[name] = StructColumn([(f, node(d, depth)) for f, d in fields])
        return cache[name]

    return struct(msgtype, 0)


def message_nbytes(obj: Any, _depth: int = 0) -> int:
    """Approximate in-memory size of a decoded message (arrays and strings counted exactly)."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, bytes | bytearray | memoryview | str):
        return len(obj)
    if _depth > _MAX_DEPTH:
        return 8
    if isinstance(obj, list | tuple):
        return 8 + sum(message_nbytes(x, _depth + 1) for x in obj)
    if isinstance(obj, dict):
        return 8 + sum(message_nbytes(v, _depth + 1) for v in obj.values())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(message_nbytes(getattr(obj, f.name), _depth + 1) for f in dataclasses.fields(obj))
    return 8
