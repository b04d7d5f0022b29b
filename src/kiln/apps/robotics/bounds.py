"""What reading a recording may cost: decompression bombs refused, storage sizes checked.

* `check_recording(files, storage_format)` runs before a recording is opened: every MCAP
  chunk and ROS1 bag chunk whose *declared* uncompressed size exceeds the limit, and every
  `.db3` message blob larger than it, is refused before anything is decompressed.
* The decompressors (`zstd_bounded`, `lz4_bounded`, `bz2_bounded`) never produce more than
  the limit, whatever a chunk declares; `install_bounded_decompressors()` routes rosbags'
  chunk and message decompression through them (rosbags decompresses whole chunks with no
  bound of its own).

The limit is `KILN_ROBOTICS_MAX_CHUNK_MB` (default 256), set per process with `set_limit`.
"""

from __future__ import annotations

import bz2
import io
import sqlite3
import struct
import types
from collections.abc import Iterable
from pathlib import Path

_MIB = 1024 * 1024
_limit = 256 * _MIB
_MAX_RECORD_HEADER = 1 * _MIB  # a ROS1 record header (field list) larger than this is damage


class RecordingError(ValueError):
    """The path is not a readable recording (message is safe to show to a user)."""


def set_limit(max_bytes: int) -> None:
    global _limit
    _limit = int(max_bytes)


def limit() -> int:
    return _limit


def too_big(what: str, size: int | None = None) -> RecordingError:
    told = f" declares {size / _MIB:.1f} MiB uncompressed," if size is not None else " decompresses to"
    return RecordingError(f"{what}{told} more than the {_limit / _MIB:g} MiB allowed "
                          "(KILN_ROBOTICS_MAX_CHUNK_MB); refused before decompressing")


# ------------------------------------------------------------------------------ decompressors
def zstd_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    import zstandard

    lim = _limit
    if declared is not None and declared > lim:
        raise too_big("a zstd chunk", declared)
    size = zstandard.frame_content_size(data)
    if size > lim:
        raise too_big("a zstd frame", size)
    if size >= 0:  # size known and within the limit: one allocation of exactly that size
        return zstandard.ZstdDecompressor().decompress(data)
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    while len(out) <= lim:
        part = reader.read(min(lim + 1 - len(out), 16 * _MIB))
        if not part:
            return bytes(out)
        out += part
    raise too_big("a zstd chunk")


def lz4_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    import lz4.frame

    lim = _limit
    if declared is not None and declared > lim:
        raise too_big("an lz4 chunk", declared)
    try:
        size = int(lz4.frame.get_frame_info(bytes(data[:32]))["content_size"] or 0)
    except RuntimeError:
        size = 0
    if size > lim:
        raise too_big("an lz4 frame", size)
    out = lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=lim + 1)
    if len(out) > lim:
        raise too_big("an lz4 chunk")
    return out


def bz2_bounded(data: bytes | memoryview, declared: int | None = None) -> bytes:
    lim = _limit
    if declared is not None and declared > lim:
        raise too_big("a bz2 chunk", declared)
    out, rest = bytearray(), bytes(data)
    while rest:  # several concatenated streams, like bz2.decompress
        dec = bz2.BZ2Decompressor()
        out += dec.decompress(rest, max_length=lim + 1 - len(out))
        if len(out) > lim or not dec.eof:
            if len(out) > lim or not dec.needs_input:
                raise too_big("a bz2 chunk")
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
        r2.zstd = types.SimpleNamespace(decompress=zstd_bounded, open=r2.zstd.open)


# ------------------------------------------------------------------------------ pre-flight
def check_recording(files: Iterable[Path], storage_format: str) -> None:
    """Refuse a recording holding a chunk or blob above the limit, before reading messages."""
    for f in files:
        if not f.is_file():
            continue
        if storage_format == "mcap":
            _check_mcap(f)
        elif storage_format == "bag":
            _check_bag(f)
        elif storage_format == "sqlite3":
            _check_db3(f)


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
                if c.uncompressed_size > _limit or c.compressed_size > _limit:
                    raise too_big(f"an MCAP chunk of {path.name}", c.uncompressed_size)
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
                    if declared > _limit or length > _limit:
                        raise too_big(f"an MCAP chunk of {path.name}", declared)
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
                if declared > _limit or dlen > _limit:
                    raise too_big(f"a chunk of {path.name}", declared)
            pos += 8 + hlen + dlen


def _bag_fields(raw: bytes) -> dict[str, bytes]:
    fields: dict[str, bytes] = {}
    pos = 0
    while pos + 4 <= len(raw):
        (flen,) = struct.unpack_from("<I", raw, pos)
        name, _, value = raw[pos + 4:pos + 4 + flen].partition(b"=")
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
        raise RecordingError(f"a message of {path.name} holds {biggest / _MIB:.1f} MiB, more than the "
                             f"{_limit / _MIB:g} MiB allowed (KILN_ROBOTICS_MAX_CHUNK_MB)")
