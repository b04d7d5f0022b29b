"""TFRecord without TensorFlow: masked CRC32C framing and hand-encoded tf.train.Example.

`encode_example(features)` takes {name: ("int64"|"float"|"bytes", values)}; `write_record`
frames one record; `read_records(path)` and `decode_example(buf)` read files back (used by
tests and the report). CRC32C uses the `crc32c` C extension when installed, else a
numpy implementation that processes many blocks in parallel and folds them.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

try:  # hardware-accelerated when available
    from crc32c import crc32c as _fast_crc32c
except ImportError:  # pragma: no cover - exercised by test_crc32c_fallback
    _fast_crc32c = None

_POLY = 0x82F63B78


def _table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    return t


_T = _table()
_TL = _T.tolist()
_BLOCK = 256
_SHIFT: list[list[int]] | None = None


def _shift_tables() -> list[list[int]]:
    """Four byte tables of the linear map 'feed _BLOCK zero bytes' applied to a CRC register."""
    global _SHIFT
    if _SHIFT is None:
        regs = (np.uint32(1) << np.arange(32, dtype=np.uint32)).astype(np.uint32)
        for _ in range(_BLOCK):
            regs = _T[regs & 0xFF] ^ (regs >> 8)
        basis = regs.tolist()
        tables = []
        for k in range(4):
            tab = [0] * 256
            for v in range(256):
                acc = 0
                for bit in range(8):
                    if v >> bit & 1:
                        acc ^= basis[8 * k + bit]
                tab[v] = acc
            tables.append(tab)
        _SHIFT = tables
    return _SHIFT


def crc32c_py(data: bytes | memoryview, reg: int = 0xFFFFFFFF) -> int:
    """CRC32C in numpy: raw CRCs of equal blocks side by side, then folded in order."""
    buf = np.frombuffer(data, dtype=np.uint8)
    nblocks = len(buf) // _BLOCK
    if nblocks >= 8:
        blocks = buf[: nblocks * _BLOCK].reshape(nblocks, _BLOCK)
        regs = np.zeros(nblocks, dtype=np.uint32)
        for j in range(_BLOCK):
            regs = _T[(regs ^ blocks[:, j]) & 0xFF] ^ (regs >> 8)
        s0, s1, s2, s3 = _shift_tables()
        for g in regs.tolist():
            reg = s0[reg & 0xFF] ^ s1[reg >> 8 & 0xFF] ^ s2[reg >> 16 & 0xFF] ^ s3[reg >> 24] ^ g
        buf = buf[nblocks * _BLOCK :]
    for b in buf.tolist():
        reg = _TL[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


def crc32c(data: bytes | memoryview) -> int:
    return _fast_crc32c(data) if _fast_crc32c is not None else crc32c_py(data)


def masked_crc(data: bytes | memoryview) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- protobuf
def _varint(n: int) -> bytes:
    n &= 0xFFFFFFFFFFFFFFFF  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Packed varints of many int64 values at once."""
    v = values.astype(np.int64, copy=False).view(np.uint64)
    if len(v) < 32:
        return b"".join(_varint(int(x)) for x in v.tolist())
    groups = np.stack([(v >> np.uint64(7 * i)) & np.uint64(0x7F) for i in range(10)], axis=1).astype(np.uint8)
    nbytes = np.ones(len(v), dtype=np.int64)
    for i in range(1, 10):
        nbytes += (v >> np.uint64(7 * i)) > 0
    idx = np.arange(10)
    cont = idx[None, :] < (nbytes[:, None] - 1)
    groups |= cont.astype(np.uint8) << 7
    return groups[idx[None, :] < nbytes[:, None]].tobytes()


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind: str, values: Any) -> bytes:
    if kind == "bytes":
        items = values if isinstance(values, list) else [values]
        inner = b"".join(_ld(1, bytes(x)) for x in items)
        return _ld(1, inner)
    arr = np.atleast_1d(np.asarray(values))
    if kind == "float":
        packed = arr.astype("<f4", copy=False).tobytes()
        return _ld(2, _ld(1, packed) if len(arr) else b"")
    packed = _varints(arr.astype(np.int64, copy=False).reshape(-1))
    return _ld(3, _ld(1, packed) if len(arr) else b"")


def encode_example(features: dict[str, tuple[str, Any]]) -> bytes:
    """tf.train.Example bytes; map entries are written sorted by key (deterministic)."""
    entries = []
    for key in sorted(features):
        kind, values = features[key]
        entries.append(_ld(1, _ld(1, key.encode()) + _ld(2, _feature(kind, values))))
    return _ld(1, b"".join(entries))


def write_record(fh: BinaryIO, payload: bytes) -> int:
    header = struct.pack("<Q", len(payload))
    fh.write(header + struct.pack("<I", masked_crc(header)))
    fh.write(payload)
    fh.write(struct.pack("<I", masked_crc(payload)))
    return len(payload) + 16


def open_output(path: Path, compression: str) -> BinaryIO:
    return gzip.open(path, "wb", compresslevel=6) if compression == "gzip" else open(path, "wb")  # type: ignore[return-value]


# ---------------------------------------------------------------------------- reading back
def read_records(path: str | Path, *, verify: bool = True) -> Iterator[bytes]:
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
        while header := fh.read(12):
            if len(header) < 12:
                raise ValueError("truncated tfrecord header")
            (length,) = struct.unpack("<Q", header[:8])
            if verify and struct.unpack("<I", header[8:])[0] != masked_crc(header[:8]):
                raise ValueError("tfrecord length crc mismatch")
            data = fh.read(length)
            (crc,) = struct.unpack("<I", fh.read(4))
            if verify and crc != masked_crc(data):
                raise ValueError("tfrecord data crc mismatch")
            yield data


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 2:
            n, pos = _read_varint(buf, pos)
            yield field, wire, buf[pos : pos + n]
            pos += n
        elif wire == 0:
            v, pos = _read_varint(buf, pos)
            yield field, wire, v
        elif wire == 5:
            yield field, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def decode_example(buf: bytes) -> dict[str, list[Any]]:
    """Example bytes -> {name: list of int | float | bytes}."""
    out: dict[str, list[Any]] = {}
    for _f, _w, features in _fields(buf):
        for _f2, _w2, entry in _fields(features):
            key, value = "", []
            for num, _w3, part in _fields(entry):
                if num == 1:
                    key = part.decode()
                else:
                    for kind, _w4, lst in _fields(part):
                        for _n, wire, item in _fields(lst):
                            if kind == 1:
                                value.append(bytes(item))
                            elif kind == 2:
                                value.extend(
                                    np.frombuffer(item, "<f4").tolist() if wire == 2 else [struct.unpack("<f", item)[0]]
                                )
                            elif wire == 2:
                                pos, raw = 0, bytes(item)
                                while pos < len(raw):
                                    v, pos = _read_varint(raw, pos)
                                    value.append(v - (1 << 64) if v >> 63 else v)
                            else:
                                value.append(item - (1 << 64) if item >> 63 else item)
            out[key] = value
    return out
