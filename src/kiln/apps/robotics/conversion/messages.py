"""Whole ROS messages as typed Arrow columns (the legacy per-topic Parquet layout).

`message_column(store, msgtype)` compiles a message type's field definitions (rosbags'
typestore) into a column builder: nested messages become structs, numeric arrays lists,
strings strings, and byte arrays (`uint8[]`, `int8[]`, e.g. image or cloud `data`) ONE
binary value each — never a list of numbers, never base64. Builders work column-wise over
a row group's messages (a `None` message is a null row). `build(..., views=True)` gives byte
arrays as binary views (`write_type`): a large payload stays in the buffer it was read into,
so a row group's payload bytes are never copied before Parquet encodes them.
`message_nbytes` sizes a decoded message for row-group byte bounds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa

_NUMERIC = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
_PRIMS: dict[str, tuple[pa.DataType, Any]] = {n: (pa.from_numpy_dtype(np.dtype(n)), np.dtype(n).type) for n in _NUMERIC}
_PRIMS.update(dict.fromkeys(("byte", "char"), _PRIMS["uint8"]))  # ROS aliases of uint8
_BYTES = ("uint8", "int8", "byte", "char")
_EMPTY = np.zeros(0, dtype=np.uint8)
_MAX_DEPTH = 32


class Column:
    type: pa.DataType  # the declared type: what the file's readers get back
    write_type: pa.DataType  # what `build(views=True)` returns: byte arrays as binary views

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        """An Arrow array of `values` (None = null): of `type`, or of `write_type` with `views`."""
        raise NotImplementedError


class _Prim(Column):
    def __init__(self, name: str):
        self.type, self._np = _PRIMS[name]
        self.write_type = self.type

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        arr = np.array([0 if v is None else v for v in values], dtype=self._np)
        return pa.array(arr, type=self.type, mask=mask)


class _Str(Column):
    type = write_type = pa.string()

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        return pa.array(["" if v is None else str(v) for v in values], type=self.type, mask=mask)


def _validity(mask: np.ndarray | None) -> pa.Buffer | None:
    """Arrow validity bitmap of a null mask (None when nothing is null). Built here rather than by
    passing `mask=` to pyarrow's from_arrays, which would import pyarrow.compute (0.1 s) to invert it."""
    if mask is None or not mask.any():
        return None
    return pa.py_buffer(np.packbits(~mask, bitorder="little"))


def _offsets(lengths: list[int]) -> pa.Buffer:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return pa.py_buffer(out)


BLOB_BYTES = 64 * 1024  # a byte array this large is referenced where it lies, not copied (views)
_VIEW_INLINE = 12  # a binary view holds values up to 12 bytes itself
_VIEW_MAX = 2**31 - 1  # view lengths and offsets are int32


class _Bytes(Column):
    """uint8/int8 arrays: one binary value per message."""

    type = pa.large_binary()
    write_type = pa.binary_view()

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        arrays = [
            _EMPTY
            if v is None
            else np.frombuffer(v if not isinstance(v, np.ndarray) else np.ascontiguousarray(v), dtype=np.uint8)
            for v in values
        ]
        if views:
            return _byte_views(arrays, mask)
        if sum(1 for a in arrays if len(a)) == 1:  # one payload (a frame alone): no copy at all
            data = next(a for a in arrays if len(a))
        else:
            data = np.concatenate(arrays) if arrays else _EMPTY
        return pa.Array.from_buffers(
            self.type, len(values), [_validity(mask), _offsets([len(a) for a in arrays]), pa.py_buffer(data)]
        )


def _byte_views(arrays: list[np.ndarray], mask: np.ndarray | None) -> pa.Array:
    """uint8 arrays as one binary-view array: each of BLOB_BYTES or more is a data buffer of its
    own (the buffer it was read into, no copy), the smaller ones share one copied buffer.

    A view is 16 bytes: int32 length, then either the value itself (up to 12 bytes, zero
    padded) or its first 4 bytes, the int32 index of its data buffer and its int32 offset there.
    """
    n = len(arrays)
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=n)
    if n and lengths.max() > _VIEW_MAX:
        raise ValueError(f"a byte array of {int(lengths.max())} bytes is larger than a Parquet value may be")
    views = np.zeros((n, 4), dtype="<i4")  # length, prefix, buffer index, offset
    views[:, 0] = lengths
    raw = views.view(np.uint8).reshape(n, 16)
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
    return pa.Array.from_buffers(pa.binary_view(), n, [_validity(mask), pa.py_buffer(views), *buffers])


class _List(Column):
    """Variable or fixed-size arrays of primitives, strings or messages. Byte arrays inside
    them are copied, never views: pyarrow (21-26) cannot encode views below a list of structs."""

    def __init__(self, item: Column):
        self.item = item
        self.type = self.write_type = pa.large_list(item.type)

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        lengths = [0 if v is None else len(v) for v in values]
        if isinstance(self.item, _Prim):
            parts = [np.asarray(v, dtype=self.item._np).reshape(-1) for v in values if v is not None and len(v)]
            flat = pa.array(np.concatenate(parts) if parts else np.zeros(0, self.item._np), type=self.item.type)
        else:
            flat = self.item.build([x for v in values if v is not None for x in v])
        return pa.Array.from_buffers(self.type, len(values), [_validity(mask), _offsets(lengths)], children=[flat])


class _Struct(Column):
    def __init__(self, fields: list[tuple[str, Column]]):
        self.fields = fields
        placeholder = [pa.field("_", pa.bool_())]
        self.type = pa.struct([pa.field(n, c.type) for n, c in fields] or placeholder)
        self.write_type = pa.struct([pa.field(n, c.write_type) for n, c in fields] or placeholder)

    def build(self, values: list[Any], mask: np.ndarray | None = None, views: bool = False) -> pa.Array:
        out_type = self.write_type if views else self.type
        if mask is not None and len(mask) and mask.all():  # rows without this topic: one call
            return pa.nulls(len(values), out_type)
        if not self.fields:  # an empty message (std_msgs/Empty): one placeholder child
            children = [pa.nulls(len(values), pa.bool_())]
        else:
            children = [
                c.build([None if v is None else getattr(v, n, None) for v in values], views=views)
                for n, c in self.fields
            ]
        return pa.Array.from_buffers(out_type, len(values), [_validity(mask)], children=children)


def message_column(store: Any, msgtype: str) -> Column:
    """The column builder of a message type, from the typestore's field definitions."""
    cache: dict[str, _Struct] = {}

    def node(desc: Any, depth: int) -> Column:
        kind, spec = int(desc[0]), desc[1]
        if depth > _MAX_DEPTH:
            raise ValueError(f"message type {msgtype} nests deeper than {_MAX_DEPTH} levels")
        if kind == 1:  # BASE: (type name, string bound)
            name = spec[0]
            return _Prim(name) if name in _PRIMS else _Str()
        if kind == 2:  # NAME: a nested message type
            return struct(spec, depth + 1)
        elem = spec[0]  # ARRAY / SEQUENCE: (element descriptor, size)
        if int(elem[0]) == 1 and elem[1][0] in _BYTES:
            return _Bytes()
        return _List(node(elem, depth + 1))

    def struct(name: str, depth: int) -> _Struct:
        if name not in cache:
            _consts, fields = store.fielddefs[name]
            cache[name] = _Struct([(f, node(d, depth)) for f, d in fields])
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
