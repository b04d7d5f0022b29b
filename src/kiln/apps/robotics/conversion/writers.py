"""Dataset writers: typed Parquet (row groups written as produced) and TFRecord.

Both take rows one at a time (`add`) and keep at most one row group (or one record) in
memory. Parquet columns are typed: bytes -> binary, numerics -> scalars or lists, json ->
JSON text, plus `<feature>__present` flags; row groups are encoded and written by a
background thread so decoding and writing overlap.
"""

from __future__ import annotations

import base64
import functools
import json
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kiln.apps.robotics.conversion import tfrecord
from kiln.apps.robotics.conversion.messages import Column, message_nbytes
from kiln.apps.robotics.spec.models import FeatureSpec, OutputSpec

ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 4096
_ARROW = {"int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(), "bool": pa.bool_()}


class WriterError(ValueError):
    pass


def _nbytes(v: Any) -> int:
    """Bytes a value holds, for every value type (JSON data and whole messages included), so a
    row group is bounded by ROW_GROUP_BYTES whatever its columns carry."""
    if isinstance(v, np.ndarray):
        return v.nbytes
    if isinstance(v, bytes | bytearray):
        return len(v)
    if v is None or isinstance(v, bool | int | float | np.generic):
        return 16
    return message_nbytes(v)


class ParquetShardWriter:
    # where a row group's Arrow table is built: the writer thread (cheap, zero-copy columns) or
    # the producer (columns that cost a copy: then building and Parquet writing overlap)
    build_in_producer = False

    def __init__(self, path: Path, features: dict[str, FeatureSpec], output: OutputSpec):
        self.path, self.features = path, features
        self.compression = None if output.compression == "none" else output.compression
        self.rows = 0
        self._cols: dict[str, list[Any]] = {name: [] for name in features}
        self._present: dict[str, list[int]] = {n: [] for n, f in features.items() if f.presence_flag}
        self._ts: list[int] = []
        self._bytes = 0
        self._listy: dict[str, bool] = {n: bool(f.shape) for n, f in features.items() if f.shape is not None}
        self._writer: pq.ParquetWriter | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="parquet-writer", daemon=True)
        self._thread.start()

    def add(
        self, timestamp_ns: int, values: dict[str, Any], presence: dict[str, int], nbytes: int | None = None
    ) -> None:
        """Append a row; `nbytes` (when the caller knows it) saves sizing the values."""
        self._ts.append(timestamp_ns)
        for name, col in self._cols.items():
            v = values.get(name)
            col.append(v)
            if nbytes is None:
                self._bytes += _nbytes(v)
        if nbytes is not None:
            self._bytes += nbytes
        for name, col in self._present.items():
            col.append(presence.get(name, 0))
        self.rows += 1
        if self._bytes >= ROW_GROUP_BYTES or len(self._ts) >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._ts:
            return
        self._raise_pending()
        batch: Any = (self._ts, self._cols, self._present)
        if self.build_in_producer:
            batch = self._table(*batch)
        self._ts, self._bytes = [], 0
        self._cols = {n: [] for n in self._cols}
        self._present = {n: [] for n in self._present}
        self._queue.put(batch)  # blocks while a row group is in flight: bounded memory

    def close(self) -> int:
        self.flush()
        self._queue.put(None)
        self._thread.join()
        self._raise_pending()
        if self._writer is None:  # no rows: still write a valid, empty file with the schema
            self._writer = self._open(self._schema())
        self._writer.close()
        return self.rows

    def abort(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._writer is not None:
            self._writer.close()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise WriterError(str(self._error)) from self._error

    def _drain(self) -> None:
        while (batch := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                table = batch if isinstance(batch, pa.Table) else self._table(*batch)
                if self._writer is None:
                    self._writer = self._open(table.schema)
                self._writer.write_table(table)
            except BaseException as exc:  # surfaced on the producer's next call
                self._error = exc

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        # dictionary encoding hashes every value: ruinous for image/cloud blobs (10x slower)
        small = (
            ["timestamp_ns"]
            + [n for n, f in self.features.items() if f.dtype in _ARROW]
            + [f"{n}__present" for n in self._present]
        )
        return pq.ParquetWriter(
            self.path, schema, compression=self.compression, use_dictionary=small[1:], write_statistics=small
        )

    def _schema(self) -> pa.Schema:
        fields = [pa.field("timestamp_ns", pa.int64(), nullable=False)]
        for name, f in self.features.items():
            fields.append(pa.field(name, self._type(name, f)))
        fields += [pa.field(f"{n}__present", pa.bool_()) for n in self._present]
        return pa.schema(fields)

    def _type(self, name: str, f: FeatureSpec) -> pa.DataType:
        if f.dtype == "bytes":
            return pa.large_binary()
        if f.dtype == "json":
            return pa.string()
        base = _ARROW[f.dtype]
        return pa.large_list(base) if self._listy.get(name) else base

    def _table(self, ts: list[int], cols: dict[str, list[Any]], present: dict[str, list[int]]) -> pa.Table:
        for name, values in cols.items():  # decide scalar vs list from the first value seen
            if name not in self._listy:
                first = next((v for v in values if v is not None), None)
                if first is not None:
                    self._listy[name] = isinstance(first, np.ndarray) and first.ndim > 0
        arrays = [pa.array(np.asarray(ts, dtype=np.int64))]
        for name, f in self.features.items():
            arrays.append(self._column(name, f, cols[name]))
        arrays += [pa.array(np.asarray(present[n], dtype=bool)) for n in self._present]
        return pa.Table.from_arrays(arrays, schema=self._schema())

    def _column(self, name: str, f: FeatureSpec, values: list[Any]) -> pa.Array | pa.ChunkedArray:
        n = len(values)
        mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
        if f.dtype == "json":
            return pa.array(
                [None if v is None else json.dumps(v, separators=(",", ":")) for v in values], type=pa.string()
            )
        if f.dtype == "bytes":
            # one zero-copy chunk per value: the blob stays in the buffer it was decoded into
            chunks = []
            for v in values:
                if v is None:
                    chunks.append(pa.nulls(1, pa.large_binary()))
                    continue
                buf = pa.py_buffer(v)
                chunks.append(
                    pa.Array.from_buffers(
                        pa.large_binary(), 1, [None, pa.py_buffer(np.array([0, buf.size], np.int64)), buf]
                    )
                )
            return pa.chunked_array(chunks, type=pa.large_binary())
        np_type = {"int64": np.int64, "float32": np.float32, "float64": np.float64, "bool": np.bool_}[f.dtype]
        if not self._listy.get(name):
            try:
                flat = np.array([0 if v is None else v for v in values], dtype=np_type)
            except (TypeError, ValueError) as exc:
                raise WriterError(f"feature {name} mixes scalars and arrays; declare its shape") from exc
            if flat.ndim != 1:
                raise WriterError(f"feature {name} mixes scalars and arrays; declare its shape")
            return pa.array(flat, mask=mask if mask.any() else None)
        arrs = [np.atleast_1d(np.asarray(v, dtype=np_type)).reshape(-1) for v in values if v is not None]
        lengths = np.zeros(n, dtype=np.int64)
        lengths[~mask] = [len(a) for a in arrs]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
        flat = pa.array(np.concatenate(arrs) if arrs else np.zeros(0, np_type))
        return pa.LargeListArray.from_arrays(offsets, flat, mask=pa.array(mask) if mask.any() else None)


class TFRecordShardWriter:
    """One tf.train.Example per row (see `example_features` for the feature layout)."""

    def __init__(self, path: Path, features: dict[str, FeatureSpec], output: OutputSpec):
        self.path, self.features, self.output = path, features, output
        self.rows = 0
        self._fh = tfrecord.open_output(path, output.compression)

    def add(
        self, timestamp_ns: int, values: dict[str, Any], presence: dict[str, int], nbytes: int | None = None
    ) -> None:
        feats = example_features(timestamp_ns, values, presence, self.features, self.output.image_payload_contract)
        tfrecord.write_record(self._fh, tfrecord.encode_example(feats))
        self.rows += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> int:
        self._fh.close()
        return self.rows

    def abort(self) -> None:
        self._fh.close()


def example_features(
    timestamp_ns: int, values: dict[str, Any], presence: dict[str, int], features: dict[str, FeatureSpec], contract: str
) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {"timestamp_ns": ("int64", [timestamp_ns])}
    for name, f in features.items():
        if f.presence_flag:
            out[f"{name}__present"] = ("int64", [presence.get(name, 0)])
        v = values.get(name)
        if v is None:
            continue
        if f.dtype == "bytes":
            out[name] = ("bytes", [v if isinstance(v, bytes) else v.tobytes()])
        elif f.dtype in ("int64", "bool"):
            out[name] = ("int64", np.atleast_1d(np.asarray(v, dtype=np.int64)).reshape(-1))
        elif f.dtype in ("float32", "float64"):
            out[name] = ("float", np.atleast_1d(np.asarray(v, dtype=np.float32)).reshape(-1))
        else:
            _flatten_json(name, v, out, contract)
    return out


def _wrapped_bytes(v: Any) -> bytes | None:
    if isinstance(v, dict) and v.get("__bytes__"):
        import base64

        return base64.b64decode(v["value"])
    return None


def _is_image(d: dict[str, Any]) -> bool:
    return "data" in d and (("height" in d and "width" in d and "encoding" in d) or "format" in d)


def _flatten_json(prefix: str, v: Any, out: dict[str, tuple[str, Any]], contract: str) -> None:
    """Nested json -> `a__b__c` features; lists add `__sequence_length__<prefix>`."""
    raw = _wrapped_bytes(v)
    if raw is not None:
        out[prefix] = ("bytes", [raw]) if contract == "bytes_v2" else ("int64", np.frombuffer(raw, np.uint8))
        if contract != "bytes_v2":
            out[f"__sequence_length__{prefix}"] = ("int64", [len(raw)])
        return
    if isinstance(v, dict):
        if not v:
            out[prefix] = ("bytes", [b"{}"])
            return
        image = _is_image(v)
        for k, item in v.items():
            key = f"{prefix}__{k}"
            if image and k == "data" and contract == "bytes_v2":
                data = _wrapped_bytes(item)
                out[key] = ("bytes", [data if data is not None else bytes(np.asarray(item, np.uint8))])
            else:
                _flatten_json(key, item, out, contract)
        return
    if isinstance(v, bool | int):
        out[prefix] = ("int64", [int(v)])
    elif isinstance(v, float):
        out[prefix] = ("float", [v])
    elif isinstance(v, str):
        out[prefix] = ("bytes", [v.encode()])
    elif isinstance(v, list):
        out[f"__sequence_length__{prefix}"] = ("int64", [len(v)])
        if all(isinstance(x, bool | int) for x in v):
            out[prefix] = ("int64", np.asarray(v, dtype=np.int64))
        elif all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            out[prefix] = ("float", np.asarray(v, dtype=np.float32))
        else:
            out[prefix] = ("bytes", [json.dumps(v).encode()])
    elif v is not None:
        out[prefix] = ("bytes", [json.dumps(v).encode()])


def _view_writer(where: Any, schema: pa.Schema, compression: str | None = None) -> pq.ParquetWriter:
    # Each column chunk in one write batch: pyarrow (21-26) cannot cut a view array below a
    # struct into batches ("Slicing not implemented for BinaryView"); no row group has more rows.
    return pq.ParquetWriter(
        where,
        schema,
        compression=compression,
        use_dictionary=False,
        store_schema=False,
        write_batch_size=ROW_GROUP_ROWS,
        write_statistics=["timestamp_ns"],
    )


@functools.cache
def views_writable() -> bool:
    """Whether this pyarrow encodes binary views below structs to Parquet and lets a writer
    add file metadata (pyarrow 21 and later); older ones get byte arrays copied instead."""
    try:
        message = pa.struct([("data", pa.binary_view())])
        column = pa.array([{"data": b"a value past twelve bytes"}, {"data": None}, None], message)
        table = pa.table({"timestamp_ns": pa.array([1, 2, 3], pa.int64()), "message": column})
        writer = _view_writer(pa.BufferOutputStream(), table.schema)
        writer.write_table(table)
        writer.add_key_value_metadata({"k": "v"})
        writer.close()
    except (pa.ArrowException, AttributeError, NotImplementedError, TypeError, ValueError):
        return False
    return True


class MessageParquetWriter(ParquetShardWriter):
    """The legacy per-topic layout: `timestamp_ns` plus one typed struct column per mapped
    topic (null where the row has no message of it); byte arrays are binary values.

    Byte arrays reach the encoder as binary views of the buffers they were read into (one
    Arrow chunk per column and row group, no copy). The file is the same as if they had been
    `large_binary` arrays — byte for byte: Parquet stores both as BYTE_ARRAY, and the Arrow
    schema kept in the file (`ARROW:schema`, which pyarrow and pandas restore types from) is
    the declared one, written in place of the views' own."""

    build_in_producer = True  # the writer thread only encodes (the longest stage): the producer builds

    def __init__(self, path: Path, columns: dict[str, Column], output: OutputSpec):
        self.columns = columns
        self.views = views_writable()
        super().__init__(
            path,
            dict.fromkeys(columns, FeatureSpec.model_construct(dtype="json", presence_flag=False, shape=None)),
            output,
        )
        # per column, the messages of the row group and the indices of the rows holding them:
        # a topic's column is built from its own messages, never from a row of Nones per row
        self._present = {name: [] for name in columns}

    def add(
        self, timestamp_ns: int, values: dict[str, Any], presence: dict[str, int], nbytes: int | None = None
    ) -> None:
        """Append a row: `values` holds the row's messages by column (absent or None: null)."""
        row = len(self._ts)
        self._ts.append(timestamp_ns)
        size = 8
        for name, v in values.items():
            if v is not None:
                self._cols[name].append(v)
                self._present[name].append(row)
                if nbytes is None:
                    size += _nbytes(v)
        self._bytes += size if nbytes is None else nbytes
        self.rows += 1
        if self._bytes >= ROW_GROUP_BYTES or len(self._ts) >= ROW_GROUP_ROWS:
            self.flush()

    def _open(self, schema: pa.Schema) -> pq.ParquetWriter:
        declared = self._schema()
        if not self.views:
            return pq.ParquetWriter(
                self.path,
                declared,
                compression=self.compression,
                use_dictionary=False,
                write_statistics=["timestamp_ns"],
            )
        writer = _view_writer(self.path, self._write_schema(), self.compression)
        writer.add_key_value_metadata({"ARROW:schema": base64.b64encode(declared.serialize().to_pybytes())})
        return writer

    def _schema(self) -> pa.Schema:
        return self._fields(lambda c: c.type)

    def _write_schema(self) -> pa.Schema:
        return self._fields(lambda c: c.write_type)

    def _fields(self, type_of: Any) -> pa.Schema:
        return pa.schema(
            [pa.field("timestamp_ns", pa.int64(), nullable=False)]
            + [pa.field(n, type_of(c)) for n, c in self.columns.items()]
        )

    def _table(self, ts: list[int], cols: dict[str, list[Any]], present: dict[str, list[int]]) -> pa.Table:
        arrays = [pa.array(np.asarray(ts, dtype=np.int64))]
        for name, col in self.columns.items():
            arrays.append(col.array(cols[name], present[name], len(ts), views=self.views))
        return pa.Table.from_arrays(arrays, schema=self._write_schema() if self.views else self._schema())


def make_writer(path: Path, features: dict[str, FeatureSpec], output: OutputSpec) -> Any:
    cls = ParquetShardWriter if output.format == "parquet" else TFRecordShardWriter
    return cls(path, features, output)
