"""What reading a recording may cost: decompression bombs refused, storage sizes checked.

* `check_recording(files, storage_format)` runs before a recording is opened: every MCAP
  chunk and ROS1 bag chunk whose *declared* uncompressed size exceeds the limit or the ratio,
  every `.db3` message blob larger than the limit, and every file-compressed rosbag2 storage
  file whose zstd frame declares more than its ratio allows, is refused before anything is
  decompressed.
* The decompressors (`zstd_bounded`, `lz4_bounded`, `bz2_bounded`) never produce more than
  the limit or the ratio allow, whatever a chunk declares; `install_bounded_decompressors()`
  routes rosbags' chunk, message and whole-file decompression through them (rosbags
  decompresses whole chunks, and whole zstd-compressed storage files into a temporary
  folder, with no bound of its own).

The limits are `KILN_ROBOTICS_MAX_CHUNK_MB` (default 256: the most one chunk or message may
decompress to) and `KILN_ROBOTICS_MAX_RATIO` (default 1000: uncompressed / compressed size,
enforced above RATIO_FLOOR, where a small chunk that compresses very well cannot hurt),
set per process with `set_limit`. A whole compressed storage file is streamed to disk in
bounded memory; only the ratio bounds it (recordings are legitimately bigger than a chunk).
"""

from __future__ import annotations

import bz2
import io
import os
import sqlite3
import struct
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_MIB = 1024 * 1024
_limit = 256 * _MIB
_ratio = 1000
RATIO_FLOOR = 16 * _MIB  # output up to this size is never refused for its ratio
_COPY_BYTES = 1 * _MIB  # what one read of a whole compressed file returns at most
_MAX_RECORD_HEADER = 1 * _MIB  # a ROS1 record header (field list) larger than this is damage


class RecordingError(ValueError):
    """The path is not a readable recording (message is safe to show to a user)."""


def set_limit(max_bytes: int, max_ratio: int | None = None) -> None:
    global _limit, _ratio
    _limit = int(max_bytes)
    if max_ratio is not None:
        _ratio = int(max_ratio)


def limit() -> int:
    return _limit


def ratio() -> int:
    return _ratio


def _dense_cap(compressed: int) -> int:
    """The most `compressed` bytes may decompress to by the ratio alone."""
    return max(RATIO_FLOOR, _ratio * max(compressed, 0))


def _cap(compressed: int) -> int:
    return min(_limit, _dense_cap(compressed))


def too_dense(what: str, compressed: int, size: int | None = None) -> RecordingError:
    if size is None:
        return RecordingError(
            f"{what} decompresses to more than {_ratio}x its {compressed / 1024:.1f} KiB "
            "(KILN_ROBOTICS_MAX_RATIO); decompression stopped"
        )
    return RecordingError(
        f"{what} declares {size / _MIB:.1f} MiB uncompressed from {compressed / 1024:.1f} KiB, "
        f"more than the {_ratio}x ratio allowed (KILN_ROBOTICS_MAX_RATIO); refused before "
        "decompressing"
    )


def check_declared(what: str, declared: int, compressed: int) -> None:
    """Refuse a declared uncompressed size above the limit or the ratio (nothing decompressed yet)."""
    if declared > _limit:
        raise too_big(what, declared)
    if declared > _dense_cap(compressed):
        raise too_dense(what, compressed, declared)


def _overflow(what: str, compressed: int) -> RecordingError:
    """Output ran past `_cap(compressed)`: name whichever bound stopped it."""
    return too_big(what) if _cap(compressed) >= _limit else too_dense(what, compressed)


def too_big(what: str, size: int | None = None) -> RecordingError:
    told = f" declares {size / _MIB:.1f} MiB uncompressed," if size is not None else " decompresses to"
    return RecordingError(
        f"{what}{told} more than the {_limit / _MIB:g} MiB allowed "
        "(KILN_ROBOTICS_MAX_CHUNK_MB); refused before decompressing"
    )


# ------------------------------------------------------------------------------ decompressors
def zstd_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    import zstandard

    lim = _cap(len(data))
    if declared is not None:
        check_declared("a zstd chunk", declared, len(data))
    size = zstandard.frame_content_size(data)
    if size > lim:
        check_declared("a zstd frame", size, len(data))
    if size >= 0:  # size known and within the limit: one allocation of exactly that size
        return zstandard.ZstdDecompressor().decompress(data)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    while len(out) <= lim:
        part = reader.read(min(lim + 1 - len(out), 16 * _MIB))
        if not part:
            return bytes(out)
        out += part
    raise _overflow("a zstd chunk", len(data))


def lz4_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    import lz4.frame

    lim = _cap(len(data))
    if declared is not None:
        check_declared("an lz4 chunk", declared, len(data))
    try:
        size = int(lz4.frame.get_frame_info(bytes(data[:32]))["content_size"] or 0)
    except RuntimeError:
        size = 0
    if size > lim:
        check_declared("an lz4 frame", size, len(data))
    out = lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=lim + 1)
    if len(out) > lim:
        raise _overflow("an lz4 chunk", len(data))
    return out


def bz2_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    lim = _cap(len(data))
    if declared is not None:
        check_declared("a bz2 chunk", declared, len(data))
    out, rest = bytearray(), bytes(data)
    while rest:  # several concatenated streams, like bz2.decompress
        dec = bz2.BZ2Decompressor()
        out += dec.decompress(rest, max_length=lim + 1 - len(out))
        if len(out) > lim or not dec.eof:
            if len(out) > lim or not dec.needs_input:
                raise _overflow("a bz2 chunk", len(data))
            raise RecordingError("a bz2 chunk ends before its end of stream (damaged recording)")
        rest = dec.unused_data
    return bytes(out)


def install_bounded_decompressors() -> None:
    """Route rosbags' chunk/message decompression through the bounded functions (idempotent)."""
    from rosbags.rosbag1 import reader as r1
    from rosbags.rosbag2 import reader as r2
    from rosbags.rosbag2 import storage_mcap

    r1.decompressors["bz2"] = bz2_bounded
    r1.decompressors["lz4"] = lz4_bounded
    storage_mcap.DECOMPRESSORS["lz4"] = lz4_bounded
    storage_mcap.DECOMPRESSORS["zstd"] = zstd_bounded
    if not isinstance(r2.zstd, types.SimpleNamespace):
        r2.zstd = types.SimpleNamespace(decompress=zstd_bounded, open=_bounded_open(r2.zstd.open))


# ------------------------------------------------------------------------------ pre-flight
def check_recording(files: Iterable[Path], storage_format: str) -> None:
    """Refuse a recording holding a chunk or blob above the limit, before reading messages."""
    for f in files:
        if not f.is_file():
            continue
        if _check_zstd_file(f):
            continue
        if storage_format == "mcap":
            _check_mcap(f)
        elif storage_format == "bag":
            _check_bag(f)
        elif storage_format == "sqlite3":
            _check_db3(f)


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _check_zstd_file(path: Path) -> bool:
    """A zstd-compressed storage file (rosbag2 compression_mode file): its first frame's declared
    size is checked against the ratio; True when the file is one."""
    import zstandard

    with open(path, "rb") as fh:
        head = fh.read(18)  # the longest frame header
        if head[:4] != _ZSTD_MAGIC:
            return False
        size = fh.seek(0, 2)
    try:
        declared = zstandard.frame_content_size(head)
    except zstandard.ZstdError:
        return True  # the reader reports the damage
    if declared > _dense_cap(size):
        raise too_dense(f"the compressed storage file {path.name}", size, declared)
    return True


class _BoundedFile:
    """A whole compressed storage file being decompressed: reads stop with an error once the
    output passes what the ratio allows for the file's compressed size."""

    def __init__(self, inner: Any, compressed: int, name: str):
        self._inner, self._name, self._compressed = inner, name, compressed
        self._cap, self._out = _dense_cap(compressed), 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:  # read-all stays bounded: pieces, up to the cap
            parts = []
            while part := self.read(_COPY_BYTES):
                parts.append(part)
            return b"".join(parts)
        part = self._inner.read(min(size, _COPY_BYTES))
        self._out += len(part)
        if self._out > self._cap:
            raise too_dense(f"the compressed storage file {self._name}", self._compressed)
        return part

    def __enter__(self) -> _BoundedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def close(self) -> None:
        self._inner.close()


def _bounded_open(original: Callable[..., Any]) -> Callable[..., Any]:
    def open_bounded(fileobj: Any, mode: str = "rb", **kw: Any) -> Any:
        inner = original(fileobj, mode, **kw)
        if "r" not in mode:
            return inner
        try:
            compressed = os.fstat(fileobj.fileno()).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):
            compressed = 0  # unknown size: the floor alone
        return _BoundedFile(inner, compressed, Path(getattr(fileobj, "name", "storage file")).name)

    open_bounded.bounded = True  # type: ignore[attr-defined]
    return open_bounded


def _check_mcap(path: Path) -> None:
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        if fh.read(8) != b"\x89MCAP0\r\n":
            return  # not an MCAP (e.g. a file-compressed rosbag2 part): the reader says what it is
        fh.seek(0)
        try:
            summary = make_reader(fh).get_summary()
        except Exception:  # no usable summary: walk the records instead
            summary = None
        if summary is not None and summary.chunk_indexes:
            for c in summary.chunk_indexes:
                if c.compressed_size > _limit:
                    raise too_big(f"an MCAP chunk of {path.name}", c.uncompressed_size)
                check_declared(f"an MCAP chunk of {path.name}", c.uncompressed_size, c.compressed_size)
            return
        size = fh.seek(0, 2)
        pos = 8  # after the magic
        while pos + 9 <= size:
            fh.seek(pos)
            head = fh.read(9)
            if len(head) < 9:
                return
            op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
            if op == 0x06:  # chunk: start(8) end(8) uncompressed_size(8)
                fields = fh.read(24)
                if len(fields) == 24:
                    declared = struct.unpack_from("<Q", fields, 16)[0]
                    if length > _limit:
                        raise too_big(f"an MCAP chunk of {path.name}", declared)
                    check_declared(f"an MCAP chunk of {path.name}", declared, length)
            elif op == 0x02:  # footer
                return
            pos += 9 + length


def _check_bag(path: Path) -> None:
    with open(path, "rb") as fh:
        if not fh.readline().startswith(b"#ROSBAG V2.0"):
            return  # not ours to judge: the reader reports the bad magic
        size = fh.seek(0, 2)
        pos = len(b"#ROSBAG V2.0\n")
        while pos + 8 <= size:
            fh.seek(pos)
            (hlen,) = struct.unpack("<I", fh.read(4))
            if hlen > _MAX_RECORD_HEADER:
                raise RecordingError(f"damaged ROS1 bag {path.name}: a record header of {hlen} bytes")
            fields = _bag_fields(fh.read(hlen))
            raw_len = fh.read(4)
            if len(raw_len) < 4:
                return
            (dlen,) = struct.unpack("<I", raw_len)
            if fields.get("op") == b"\x05":
                declared = struct.unpack("<I", fields["size"])[0] if len(fields.get("size", b"")) == 4 else 0
                if dlen > _limit:
                    raise too_big(f"a chunk of {path.name}", declared)
                if fields.get("compression", b"none") != b"none":
                    check_declared(f"a chunk of {path.name}", declared, dlen)
            pos += 8 + hlen + dlen


def _bag_fields(raw: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    pos = 0
    while pos + 4 <= len(raw):
        (flen,) = struct.unpack_from("<I", raw, pos)
        name, _, value = raw[pos + 4 : pos + 4 + flen].partition(b"=")
        fields[name.decode("latin-1")] = value
        pos += 4 + flen
    return fields


def _check_db3(path: Path) -> None:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        # length() of a blob reads its size from the record header, not the blob itself
        (biggest,) = con.execute("SELECT MAX(length(data)) FROM messages").fetchone()
    except sqlite3.Error:
        return  # not a rosbag2 database: the reader says so
    finally:
        con.close()
    if biggest is not None and biggest > _limit:
        raise RecordingError(
            f"a message of {path.name} holds {biggest / _MIB:.1f} MiB, more than the "
            f"{_limit / _MIB:g} MiB allowed (KILN_ROBOTICS_MAX_CHUNK_MB)"
        )
