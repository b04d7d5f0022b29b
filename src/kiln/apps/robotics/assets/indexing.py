"""Index a recording from its own index structures, without reading its messages.

Offers `index_recording(path) -> RecordingIndex` and `classify_message_type(msgtype)`.
Sources, fastest first: the MCAP summary (statistics, chunk and message indexes), the
ROS1 bag index (connection and chunk-info records plus the index records of the first
and last chunk of each topic), a rosbag2 `metadata.yaml`, SQL aggregates on a `.db3`;
only an unindexed file is scanned message by message.
The index types and the metadata document live in `recording_index.py`.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path
from typing import Any

from kiln.apps.robotics.assets.recording_index import (
    RecordingIndex,
    TopicIndex,
    classify_message_type,
    compression_label,
)
from kiln.apps.robotics.reading.reader import RecordingError, SourceInfo, detect_source, open_recording

__all__ = ["RecordingIndex", "TopicIndex", "classify_message_type", "index_recording"]


def _size(src: SourceInfo) -> int:
    return sum(f.stat().st_size for f in src.files if f.exists()) if src.files else src.path.stat().st_size


def index_recording(path: str | Path) -> RecordingIndex:
    """Index a recording; raises RecordingError (user-safe message) when it cannot."""
    src = detect_source(path)
    try:
        if src.storage_format == "bag":
            idx = _merge([_index_bag(f) for f in src.files], src)
        elif src.layout == "directory" and (src.path / "metadata.yaml").exists():
            idx = _index_rosbag2_dir(src)
        elif src.storage_format == "mcap":
            idx = _index_mcap(src.files[0], src)
        else:
            idx = _index_sqlite(src.files[0], src)
    except (RecordingError, _NoIndex):
        idx = _index_by_scan(src)
    except (OSError, struct.error, sqlite3.Error, KeyError, ValueError) as exc:
        raise RecordingError(f"cannot index {src.path.name}: {exc}") from exc
    idx.topics.sort(key=lambda t: t.name)
    return idx


class _NoIndex(Exception):
    """The file has no usable index; fall back to a scan."""


def _merge(parts: list[RecordingIndex], src: SourceInfo) -> RecordingIndex:
    if len(parts) == 1:
        parts[0].path = src.path
        return parts[0]
    topics: dict[str, TopicIndex] = {}
    for part in parts:
        for t in part.topics:
            cur = topics.get(t.name)
            if cur is None:
                topics[t.name] = TopicIndex(t.name, t.message_type, t.message_count, t.first_ns, t.last_ns)
            else:
                cur.message_count += t.message_count
                cur.first_ns = _min(cur.first_ns, t.first_ns)
                cur.last_ns = _max(cur.last_ns, t.last_ns)
    starts = [p.start_ns for p in parts if p.start_ns is not None]
    ends = [p.end_ns for p in parts if p.end_ns is not None]
    kinds = {k for p in parts for k in p.compression_format.split("+")}
    return RecordingIndex(
        src.path,
        _size(src),
        parts[0].storage_format,
        parts[0].ros_version,
        compression_label(kinds),
        parts[0].index_source,
        min(starts) if starts else None,
        max(ends) if ends else None,
        list(topics.values()),
    )


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


# ---------------------------------------------------------------------------- ROS1 bag
def _ros2_name(ros1_type: str) -> str:
    pkg, _, name = ros1_type.partition("/")
    return f"{pkg}/msg/{name}" if name and "/msg/" not in ros1_type else ros1_type


def _read_record(fh: Any) -> tuple[dict[str, bytes], int]:
    """Read one bag record header; returns (fields, data length) with the file at the data."""
    (hlen,) = struct.unpack("<I", fh.read(4))
    raw = fh.read(hlen)
    fields: dict[str, bytes] = {}
    pos = 0
    while pos < hlen:
        (flen,) = struct.unpack_from("<I", raw, pos)
        name, _, value = raw[pos + 4 : pos + 4 + flen].partition(b"=")
        fields[name.decode()] = value
        pos += 4 + flen
    (dlen,) = struct.unpack("<I", fh.read(4))
    return fields, dlen


def _bag_time(v: bytes) -> int:
    sec, nsec = struct.unpack("<II", v)
    return sec * 1_000_000_000 + nsec


def _index_bag(path: Path) -> RecordingIndex:
    with open(path, "rb") as fh:
        if not fh.readline().startswith(b"#ROSBAG V2.0"):
            raise RecordingError(f"not a ROS1 bag (bad magic): {path.name}")
        hdr, dlen = _read_record(fh)
        index_pos = struct.unpack("<Q", hdr["index_pos"])[0]
        conn_count = struct.unpack("<I", hdr["conn_count"])[0]
        chunk_count = struct.unpack("<I", hdr["chunk_count"])[0]
        if index_pos == 0:
            raise _NoIndex()
        fh.seek(index_pos)
        conns: dict[int, tuple[str, str]] = {}
        for _ in range(conn_count):
            f, dlen = _read_record(fh)
            data = fh.read(dlen)
            inner, pos = {}, 0
            while pos < len(data):
                (flen,) = struct.unpack_from("<I", data, pos)
                k, _, v = data[pos + 4 : pos + 4 + flen].partition(b"=")
                inner[k.decode()] = v
                pos += 4 + flen
            conns[struct.unpack("<I", f["conn"])[0]] = (f["topic"].decode(), _ros2_name(inner["type"].decode()))
        chunks: list[tuple[int, int, int, dict[int, int]]] = []
        for _ in range(chunk_count):
            f, dlen = _read_record(fh)
            data = fh.read(dlen)
            counts = dict(struct.iter_unpack("<II", data))
            chunks.append(
                (struct.unpack("<Q", f["chunk_pos"])[0], _bag_time(f["start_time"]), _bag_time(f["end_time"]), counts)
            )
        chunks.sort(key=lambda c: c[1])
        counts: dict[int, int] = dict.fromkeys(conns, 0)
        first_chunk: dict[int, int] = {}
        last_chunk: dict[int, int] = {}
        for i, (_pos, _s, _e, cc) in enumerate(chunks):
            for cid, n in cc.items():
                counts[cid] = counts.get(cid, 0) + n
                first_chunk.setdefault(cid, i)
                last_chunk[cid] = i
        # exact per-connection first/last times from the index records of just those chunks
        needed = sorted(set(first_chunk.values()) | set(last_chunk.values()) | ({0} if chunks else set()))
        times: dict[tuple[int, int], tuple[int, int]] = {}
        compressions: set[str] = set()
        for i in needed:
            fh.seek(chunks[i][0])
            f, dlen = _read_record(fh)
            compressions.add(f["compression"].decode())
            fh.seek(dlen, 1)
            for _ in range(len(chunks[i][3])):
                f, dlen = _read_record(fh)
                data = fh.read(dlen)
                stamps = [s * 1_000_000_000 + n for s, n, _o in struct.iter_unpack("<III", data)]
                if stamps:
                    times[(i, struct.unpack("<I", f["conn"])[0])] = (min(stamps), max(stamps))
    topics: dict[str, TopicIndex] = {}
    for cid, (topic, msgtype) in conns.items():
        first = times.get((first_chunk.get(cid, -1), cid), (None, None))[0]
        last = times.get((last_chunk.get(cid, -1), cid), (None, None))[1]
        t = topics.setdefault(topic, TopicIndex(topic, msgtype, 0))
        t.message_count += counts.get(cid, 0)
        t.first_ns, t.last_ns = _min(t.first_ns, first), _max(t.last_ns, last)
    start = min((c[1] for c in chunks), default=None)
    end = max((c[2] for c in chunks), default=None)
    return RecordingIndex(
        path,
        path.stat().st_size,
        "bag",
        "ROS1",
        compression_label(compressions),
        "bag-index",
        start,
        end,
        list(topics.values()),
    )


# ---------------------------------------------------------------------------- MCAP
def _mcap_channel_times(fh: Any, summary: Any) -> dict[int, tuple[int, int]]:
    """Exact first/last log time per channel from the message indexes of its first/last chunk."""
    chunks = sorted(summary.chunk_indexes, key=lambda c: c.message_start_time)
    out: dict[int, tuple[int, int]] = {}
    for cid in summary.channels:
        having = [c for c in chunks if cid in c.message_index_offsets]
        if not having:
            continue
        lo = _mcap_index_times(fh, having[0].message_index_offsets[cid])
        hi = lo if having[-1] is having[0] else _mcap_index_times(fh, having[-1].message_index_offsets[cid])
        out[cid] = (lo[0], hi[1])
    return out


def _mcap_index_times(fh: Any, offset: int) -> tuple[int, int]:
    fh.seek(offset)
    op, _length, _channel, nbytes = struct.unpack("<BQHI", fh.read(15))
    if op != 0x07:
        raise _NoIndex()
    pairs = struct.iter_unpack("<QQ", fh.read(nbytes))
    stamps = [t for t, _o in pairs]
    return min(stamps), max(stamps)


def _index_mcap(path: Path, src: SourceInfo) -> RecordingIndex:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    with open(path, "rb") as fh:
        try:
            summary = make_reader(fh).get_summary()
        except (McapError, struct.error) as exc:  # unfinished or damaged: a scan says what is readable
            raise _NoIndex() from exc
        if summary is None or summary.statistics is None:
            raise _NoIndex()
        stats = summary.statistics
        times = _mcap_channel_times(fh, summary) if summary.chunk_indexes else {}
    topics: dict[str, TopicIndex] = {}
    encodings: set[str] = set()
    for cid, ch in summary.channels.items():
        schema = summary.schemas.get(ch.schema_id)
        encodings.add(ch.message_encoding)
        t = topics.setdefault(ch.topic, TopicIndex(ch.topic, schema.name if schema else "unknown", 0))
        t.message_count += stats.channel_message_counts.get(cid, 0)
        first, last = times.get(cid, (None, None))
        if first is None and t.message_count:
            # unchunked file: only the global span is known without a scan
            first, last = stats.message_start_time, stats.message_end_time
        t.first_ns, t.last_ns = _min(t.first_ns, first), _max(t.last_ns, last)
    compressions = {c.compression or "none" for c in summary.chunk_indexes} or {"none"}
    empty = stats.message_count == 0
    ros = "ROS1" if encodings == {"ros1"} else src.ros_version
    return RecordingIndex(
        src.path,
        _size(src),
        "mcap",
        ros,
        compression_label(compressions),
        "mcap-summary",
        None if empty else stats.message_start_time,
        None if empty else stats.message_end_time,
        list(topics.values()),
    )


# ---------------------------------------------------------------------------- ROS2 sqlite / dir
def _index_sqlite(path: Path, src: SourceInfo) -> RecordingIndex:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, name, type FROM topics")}
        agg = con.execute(
            "SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id"
        ).fetchall()
    finally:
        con.close()
    topics = {tid: TopicIndex(name, typ, 0) for tid, (name, typ) in names.items()}
    for tid, n, lo, hi in agg:
        if tid in topics:
            topics[tid].message_count, topics[tid].first_ns, topics[tid].last_ns = n, lo, hi
    starts = [t.first_ns for t in topics.values() if t.first_ns is not None]
    ends = [t.last_ns for t in topics.values() if t.last_ns is not None]
    return RecordingIndex(
        src.path,
        _size(src),
        "sqlite3",
        "ROS2",
        "none",
        "sqlite",
        min(starts, default=None),
        max(ends, default=None),
        list(topics.values()),
    )


def _index_rosbag2_dir(src: SourceInfo) -> RecordingIndex:
    import yaml

    info = yaml.safe_load((src.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    file_compression = info.get("compression_format") or "none"
    parts: list[RecordingIndex] = []
    if file_compression == "none" and all(f.exists() for f in src.files):
        for f in src.files:
            parts.append(_index_mcap(f, src) if src.storage_format == "mcap" else _index_sqlite(f, src))
    if parts:
        idx = _merge(parts, src)
        kinds = set(idx.compression_format.split("+"))
    else:
        # compressed files: counts and bounds from metadata.yaml, rates from the global span
        start = int(info["starting_time"]["nanoseconds_since_epoch"])
        end = start + int(info["duration"]["nanoseconds"])
        topics = [
            TopicIndex(
                t["topic_metadata"]["name"],
                t["topic_metadata"]["type"],
                int(t["message_count"]),
                start if t["message_count"] else None,
                end if t["message_count"] else None,
            )
            for t in info.get("topics_with_message_count", [])
        ]
        idx = RecordingIndex(
            src.path,
            _size(src),
            src.storage_format,
            "ROS2",
            "none",
            "metadata-yaml",
            start if topics else None,
            end if topics else None,
            topics,
        )
        kinds = set()
    kinds.add(file_compression)
    idx.compression_format = compression_label(kinds)
    return idx


def _index_by_scan(src: SourceInfo) -> RecordingIndex:
    topics: dict[str, TopicIndex] = {}
    with open_recording(src.path) as reader:
        types = reader.topics
        for name, msgtype in types.items():
            topics[name] = TopicIndex(name, msgtype, 0)
        for raw in reader.iter_raw():
            t = topics[raw.topic]
            t.message_count += 1
            t.first_ns = raw.timestamp_ns if t.first_ns is None else t.first_ns
            t.last_ns = raw.timestamp_ns
    starts = [t.first_ns for t in topics.values() if t.first_ns is not None]
    ends = [t.last_ns for t in topics.values() if t.last_ns is not None]
    return RecordingIndex(
        src.path,
        _size(src),
        src.storage_format,
        src.ros_version,
        "unknown",
        "scan",
        min(starts, default=None),
        max(ends, default=None),
        list(topics.values()),
        ["recording has no index; counts come from a full scan"],
    )
