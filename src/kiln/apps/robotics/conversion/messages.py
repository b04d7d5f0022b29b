"""Whole ROS messages as typed Arrow columns (the legacy per-topic Parquet layout).

`message_column(store, msgtype)` compiles a message type's field definitions (rosbags'
typestore) into a column builder: nested messages become structs, numeric arrays lists,
strings strings, and byte arrays (`uint8[]`, `int8[]`, e.g. image or cloud `data`) ONE
binary value each — never a list of numbers, never base64. Builders work column-wise over
a row group's messages (a `None` message is a null row), so a row group costs one copy of
its payload bytes. `message_nbytes` sizes a decoded message for row-group byte bounds.
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
    type: pa.DataType

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
        """An Arrow array of `values` (None = null). `hold`: binary values of BLOB_BYTES or more
        are left empty, to be put in row by row without a copy (see `build_chunked`)."""
        raise NotImplementedError


class _Prim(Column):
    def __init__(self, name: str):
        self.type, self._np = _PRIMS[name]

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
        arr = np.array([0 if v is None else v for v in values], dtype=self._np)
        return pa.array(arr, type=self.type, mask=mask)


class _Str(Column):
    type = pa.string()

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
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


class _Bytes(Column):
    """uint8/int8 arrays: one binary value per message, built with a single copy."""

    type = pa.large_binary()

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
        views = [
            _EMPTY
            if v is None
            else np.frombuffer(v if not isinstance(v, np.ndarray) else np.ascontiguousarray(v), dtype=np.uint8)
            for v in values
        ]
        if hold:
            views = [_EMPTY if len(v) >= BLOB_BYTES else v for v in views]
        if sum(1 for v in views if len(v)) == 1:  # one payload (a frame alone): no copy at all
            data = next(v for v in views if len(v))
        else:
            data = np.concatenate(views) if views else _EMPTY
        return pa.Array.from_buffers(
            self.type, len(values), [_validity(mask), _offsets([len(v) for v in views]), pa.py_buffer(data)]
        )


class _List(Column):
    """Variable or fixed-size arrays of primitives, strings or messages."""

    def __init__(self, item: Column):
        self.item = item
        self.type = pa.large_list(item.type)

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
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
        self.type = (
            pa.struct([pa.field(n, c.type) for n, c in fields]) if fields else pa.struct([pa.field("_", pa.bool_())])
        )

    def build(self, values: list[Any], mask: np.ndarray | None = None, hold: bool = False) -> pa.Array:
        if mask is not None and len(mask) and mask.all():  # rows without this topic: one call
            return pa.nulls(len(values), self.type)
        if not self.fields:  # an empty message (std_msgs/Empty): one placeholder child
            children = [pa.nulls(len(values), pa.bool_())]
        else:
            children = [
                c.build([None if v is None else getattr(v, n, None) for v in values], hold=hold) for n, c in self.fields
            ]
        return pa.Array.from_buffers(self.type, len(values), [_validity(mask)], children=children)


BLOB_BYTES = 64 * 1024  # a message carrying this much binary payload gets its own Arrow chunk


def blob_paths(col: Column, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Attribute paths to the binary fields of a message column (outside lists)."""
    if isinstance(col, _Bytes):
        return [prefix]
    if isinstance(col, _Struct):
        return [p for n, c in col.fields for p in blob_paths(c, (*prefix, n))]
    return []


def _payload(v: Any, paths: list[tuple[str, ...]]) -> int:
    total = 0
    for path in paths:
        cur = v
        for name in path:
            cur = getattr(cur, name, None)
            if cur is None:
                break
        if cur is not None:
            total += getattr(cur, "nbytes", None) or len(cur)
    return total


def _put_blob(row: pa.StructArray, path: tuple[str, ...], blob: Any) -> pa.StructArray:
    """`row` (one row) with the binary field at `path` set to `blob`, zero-copy."""
    children = [row.field(i) for i in range(row.type.num_fields)]
    k = row.type.get_field_index(path[0])
    if len(path) > 1:
        children[k] = _put_blob(children[k], path[1:], blob)
    else:
        data = pa.py_buffer(blob if not isinstance(blob, np.ndarray) else np.ascontiguousarray(blob))
        children[k] = pa.Array.from_buffers(
            pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, data.size], np.int64)), data]
        )
    return pa.StructArray.from_arrays(children, fields=list(row.type))


def _blob(v: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        v = getattr(v, name, None)
        if v is None:
            return None
    return v


def build_chunked(col: Column, values: list[Any], mask: np.ndarray) -> pa.ChunkedArray:
    """A row group's column, with each big-payload message in a chunk of its own: its bytes go
    to Parquet straight from the buffer they were read into. Everything else is built once for
    the whole group (big payloads left empty); a big-payload row is that row's slice with its
    payloads put back, so the per-row cost is a few slices, not a struct built from scratch."""
    paths = blob_paths(col)
    if not paths:
        return pa.chunked_array([col.build(values, mask)], type=col.type)
    big = [i for i, v in enumerate(values) if v is not None and _payload(v, paths) >= BLOB_BYTES]
    if not big:
        return pa.chunked_array([col.build(values, mask)], type=col.type)
    whole = col.build(values, mask, hold=True)
    chunks: list[pa.Array] = []
    start = 0
    for i in big:
        if i > start:
            chunks.append(whole.slice(start, i - start))
        row = whole.slice(i, 1)
        for path in paths:
            blob = _blob(values[i], path)
            if blob is not None and len(blob) >= BLOB_BYTES:
                row = _put_blob(row, path, blob)
        chunks.append(row)
        start = i + 1
    if start < len(values):
        chunks.append(whole.slice(start))
    return pa.chunked_array(chunks, type=col.type)


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
