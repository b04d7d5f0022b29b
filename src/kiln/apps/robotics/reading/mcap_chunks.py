"""Direct MCAP chunk reading for recordings with a usable chunk index (see `McapChunks`)."""

from __future__ import annotations

import os
import queue
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from kiln.apps.robotics.reading.bounds import RecordingError, lz4_bounded, zstd_bounded

_POOL_BUFFERS = 32  # chunk buffers one MCAP reader keeps for reuse (the row groups in flight hold ~25)
_POOL_REFS = 3  # references to a free pooled buffer: the pool's list, the loop variable, getrefcount's argument
_MIB = 1024 * 1024
READ_AHEAD = 2  # chunks read (and decompressed) ahead of the one being decoded


class RawMessage(NamedTuple):
    topic: str
    timestamp_ns: int
    data: bytes | memoryview
    msgtype: str


class McapChunks:
    """Direct MCAP chunk reader: skips chunks without wanted channels, no per-message copy.

    Used when the file has a summary with chunk indexes whose time ranges do not overlap
    (what recorders write); about twice as fast as the generic reader, which verifies
    every chunk CRC and copies each message. Each chunk is read with one `pread` (never
    memory-mapped: a file truncated while mapped would kill the process with SIGBUS) and
    decompressed within the chunk limit; messages are views into that one buffer.
    """

    def __init__(self, path: Path):
        from mcap.reader import make_reader

        self.path = path
        self._fh = open(path, "rb")  # noqa: SIM115 - held open for the reader's lifetime
        summary = make_reader(self._fh).get_summary()
        chunks = sorted(summary.chunk_indexes, key=lambda c: c.message_start_time) if summary else []
        overlap = any(b.message_start_time < a.message_end_time for a, b in zip(chunks, chunks[1:], strict=False))
        size = self._fh.seek(0, 2)
        if not chunks or overlap or any(c.chunk_start_offset + c.chunk_length > size for c in chunks):
            self._fh.close()
            raise LookupError("no usable chunk index")
        self.chunks = chunks
        self._pool: list[np.ndarray] = []
        self._reading: set[threading.Event] = set()  # stop signals of the read-ahead threads running
        self.channels = {
            cid: (ch.topic, summary.schemas[ch.schema_id].name if ch.schema_id else "")
            for cid, ch in summary.channels.items()
        }

    def messages(self, topics: set[str] | None, start: int | None, stop: int | None) -> Iterator[RawMessage]:
        wanted = {c for c, (t, _) in self.channels.items() if topics is None or t in topics}
        chunks = []
        for chunk in self.chunks:
            if stop is not None and chunk.message_start_time >= stop:
                break
            if (start is None or chunk.message_end_time >= start) and wanted & chunk.message_index_offsets.keys():
                chunks.append(chunk)
        for body in self._bodies(chunks):
            try:
                found = self._messages_in(body, wanted, start, stop)
            except (struct.error, IndexError) as exc:
                raise self._damaged(exc) from None
            found.sort(key=lambda m: m[0])  # stable: equal stamps keep file order
            for t, cid, data in found:
                topic, msgtype = self.channels[cid]
                yield RawMessage(topic, t, data, msgtype)

    def _damaged(self, exc: Exception) -> RecordingError:
        return RecordingError(
            f"damaged MCAP chunk in {self.path.name} (was the recording changed while it was read?): {exc}"
        )

    def _bodies(self, chunks: list[Any]) -> Iterator[memoryview]:
        """The chunks' (decompressed) record bytes in order. A thread reads and decompresses
        up to READ_AHEAD chunks ahead of the caller (pread and decompression release the GIL, so
        reading overlaps decoding); it stops as soon as the caller does."""
        if len(chunks) <= 1:
            yield from (self._body(c) for c in chunks)
            return
        ahead: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
        done = threading.Event()
        self._reading.add(done)

        def put(item: Any) -> None:
            while not done.is_set():
                try:
                    ahead.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def read_ahead() -> None:
            try:
                for chunk in chunks:
                    if done.is_set():
                        return
                    put(self._body(chunk))
                put(None)
            except BaseException as exc:  # handed to the caller, raised there
                put(exc)

        worker = threading.Thread(target=read_ahead, name="mcap-read-ahead", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    item = ahead.get(timeout=0.05)
                except queue.Empty:
                    if done.is_set():  # close() ran while this stream was suspended
                        raise RecordingError(f"{self.path.name} was closed while it was read") from None
                    continue
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            done.set()
            self._reading.discard(done)
            worker.join()

    def _body(self, chunk: Any) -> memoryview:
        rec = self._read(chunk.chunk_start_offset, chunk.chunk_length)
        try:
            if rec[0] != 0x06:
                raise RecordingError(
                    f"recording changed while it was read: {self.path.name} has no chunk where its index points"
                )
            declared = struct.unpack_from("<Q", rec, 25)[0]
            (clen,) = struct.unpack_from("<I", rec, 37)
            comp = bytes(rec[41 : 41 + clen]).decode()
            (body_len,) = struct.unpack_from("<Q", rec, 41 + clen)
        except (struct.error, IndexError, UnicodeDecodeError) as exc:
            raise self._damaged(exc) from None
        body = rec[41 + clen + 8 : 41 + clen + 8 + body_len]
        if comp == "zstd":
            return memoryview(zstd_bounded(body, declared))
        if comp == "lz4":
            return memoryview(lz4_bounded(body, declared))
        if comp:
            raise RecordingError(f"unsupported MCAP chunk compression: {comp}")
        return body

    def _messages_in(
        self, body: memoryview, wanted: set[int], start: int | None, stop: int | None
    ) -> list[tuple[int, int, memoryview]]:
        found = []
        pos, end = 0, len(body)
        while pos < end:
            op = body[pos]
            (ln,) = struct.unpack_from("<Q", body, pos + 1)
            if pos + 9 + ln > end:
                raise RecordingError(f"damaged MCAP chunk in {self.path.name}: a record runs past its chunk")
            if op == 0x05:
                cid, _seq, t = struct.unpack_from("<HIQ", body, pos + 9)
                if cid in wanted and (start is None or t >= start) and (stop is None or t < stop):
                    found.append((t, cid, body[pos + 31 : pos + 9 + ln]))
            pos += 9 + ln
        return found

    def _read(self, offset: int, length: int) -> memoryview:
        buf = self._free_buffer(length)
        view = memoryview(buf)[:length]
        if os.preadv(self._fh.fileno(), [view], offset) < length:
            raise RecordingError(
                f"recording changed while it was read: {self.path.name} is shorter than "
                "its index says (truncated or rewritten)"
            )
        return view

    def _free_buffer(self, length: int) -> np.ndarray:
        """A pooled buffer nothing points into any more (reusing it spares the page faults of a
        fresh allocation per chunk), else a new one. Every view of a buffer (memoryview slices,
        decoded arrays, Arrow buffers) holds a reference to it, so its reference count tells."""
        for buf in self._pool:
            if len(buf) >= length and sys.getrefcount(buf) <= _POOL_REFS:
                return buf
        buf = np.empty(-(-length // _MIB) * _MIB, dtype=np.uint8)  # not zeroed: pread fills it
        if len(self._pool) < _POOL_BUFFERS:
            self._pool.append(buf)
        return buf

    def close(self) -> None:
        for done in list(self._reading):  # a caller that kept an unfinished stream: stop its thread
            done.set()
        self._fh.close()
