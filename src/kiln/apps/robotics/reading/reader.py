"""Open ROS recordings of every common layout behind one small reader.

Offers `detect_source(path) -> SourceInfo` (what a path is, without reading messages) and
`open_recording(path) -> RecordingReader`, which yields raw messages in log-time order
(`iter_raw`) and decodes them (`deserializer`, `read_messages`). Supported: ROS1 `.bag`
(uncompressed, bz2 and lz4 chunks, also a directory of split bags), MCAP files (none, lz4,
zstd chunks), ROS2 `.db3` files and rosbag2 directories with `metadata.yaml`.
Timestamps are the recording's log (receive) times in nanoseconds.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.typesys import Stores, get_typestore

try:  # rosbags' generators of single functions (0.10-0.11); without them every decoder is full
    from rosbags.serde.cdr import generate_deserialize_cdr
    from rosbags.serde.ros1 import generate_deserialize_ros1
    from rosbags.typesys.base import normalize_fieldname
except ImportError:  # pragma: no cover - a rosbags without these names
    generate_deserialize_cdr = generate_deserialize_ros1 = normalize_fieldname = None

from kiln.apps.robotics.reading.bounds import (
    RecordingError,
    check_recording,
    install_bounded_decompressors,
)
from kiln.apps.robotics.reading.mcap_chunks import McapChunks, RawMessage

install_bounded_decompressors()

StorageFormat = Literal["bag", "mcap", "sqlite3"]
RosVersion = Literal["ROS1", "ROS2"]
DecodeFailure = Literal["skip", "warn", "fail"]

SUPPORTED_SUFFIXES = (".bag", ".mcap", ".db3")


_METADATA_LIMIT = 4 * 1024 * 1024  # a rosbag2 metadata.yaml larger than this is not one


@dataclass(frozen=True)
class SourceInfo:
    path: Path  # what was asked for (file or directory), resolved
    storage_format: StorageFormat
    ros_version: RosVersion
    layout: Literal["file", "directory"]
    files: tuple[Path, ...]  # the storage files holding messages


class DecodedMessage(NamedTuple):
    topic: str
    timestamp_ns: int
    msgtype: str
    message: Any


def _mcap_profile_is_ros1(path: Path) -> bool:
    """An MCAP written from ROS1 carries `ros1msg` schemas; read the header profile cheaply."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    # magic(8) op(1) len(8) profile_len(4) profile
    if len(head) < 21 or head[8] != 0x01:
        return False
    n = int.from_bytes(head[17:21], "little")
    return head[21 : 21 + n] == b"ros1"


def detect_source(path: str | Path) -> SourceInfo:
    """Classify a recording path; raises RecordingError for anything unsupported."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise RecordingError(f"recording path does not exist: {p}")
    if p.is_dir():
        meta = p / "metadata.yaml"
        if meta.exists():
            info = _rosbag2_info(meta)
            ident = str(info.get("storage_identifier", "sqlite3"))
            storage: StorageFormat = "mcap" if ident == "mcap" else "sqlite3"
            files = tuple(_inside(p, p / str(f)) for f in info.get("relative_file_paths") or [])
            return SourceInfo(p, storage, "ROS2", "directory", files)
        bags = sorted(_inside(p, b) for b in p.glob("*.bag"))
        if bags:
            return SourceInfo(p, "bag", "ROS1", "directory", tuple(bags))
        singles = sorted(_inside(p, x) for x in p.iterdir() if x.suffix in (".mcap", ".db3"))
        if len(singles) == 1:
            inner = detect_source(singles[0])
            return SourceInfo(p, inner.storage_format, inner.ros_version, "directory", inner.files)
        raise RecordingError(f"directory holds no recording (no metadata.yaml, .bag, .mcap or .db3): {p}")
    suffix = p.suffix.lower()
    if suffix == ".bag":
        return SourceInfo(p, "bag", "ROS1", "file", (p,))
    if suffix == ".mcap":
        ros: RosVersion = "ROS1" if _mcap_profile_is_ros1(p) else "ROS2"
        return SourceInfo(p, "mcap", ros, "file", (p,))
    if suffix == ".db3":
        return SourceInfo(p, "sqlite3", "ROS2", "file", (p,))
    raise RecordingError(f"unsupported recording type: {p.name} (supported: bag, mcap, db3, rosbag2 directory)")


def _rosbag2_info(meta: Path) -> dict[str, Any]:
    import yaml

    if meta.stat().st_size > _METADATA_LIMIT:
        raise RecordingError(f"rosbag2 metadata.yaml is larger than {_METADATA_LIMIT // (1024 * 1024)} MiB: {meta}")
    try:
        info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
    except (yaml.YAMLError, UnicodeDecodeError, AttributeError) as exc:
        raise RecordingError(f"unreadable rosbag2 metadata.yaml in {meta.parent.name}: {exc}") from None
    if not isinstance(info, dict):
        raise RecordingError(f"unreadable rosbag2 metadata.yaml in {meta.parent.name}")
    return info


def _inside(folder: Path, member: Path) -> Path:
    """A storage file of a recording folder, resolved; refused unless it lies inside the folder."""
    resolved = member.resolve()
    if not resolved.is_relative_to(folder) or resolved == folder:
        raise RecordingError(f"a storage file of {folder.name} lies outside its folder: {member.name}")
    return resolved


@functools.cache
def _stock_store(ros_version: str) -> Any:
    """Stock message types (parsing them costs ~0.1 s: built once per process, on demand)."""
    return get_typestore(Stores.ROS1_NOETIC if ros_version == "ROS1" else Stores.ROS2_HUMBLE)


def _reader_paths(src: SourceInfo) -> list[Path]:
    if src.storage_format == "bag":
        return list(src.files)
    if src.layout == "directory" and (src.path / "metadata.yaml").exists():
        return [src.path]
    return [src.files[0]]


class RecordingReader:
    """One open recording. Use as a context manager; not shareable across processes."""

    def __init__(self, path: str | Path):
        self.source = detect_source(path)
        try:
            check_recording(self.source.files, self.source.storage_format)
        except OSError as exc:
            raise RecordingError(f"cannot open recording {self.source.path.name}: {exc}") from exc
        self._stamp = self._file_stamp()
        try:
            try:
                self._reader = AnyReader(_reader_paths(self.source))
                self._reader.open()
            except AnyReaderError as exc:
                if "no type definitions" not in str(exc):
                    raise
                # older rosbag2 files embed no definitions: decode with the stock ROS2 types
                self._reader = AnyReader(_reader_paths(self.source), default_typestore=self._fallback_store)
                self._reader.open()
        except Exception as exc:  # rosbags raises several unrelated types for damaged files
            raise RecordingError(f"cannot open recording {self.source.path.name}: {exc}") from exc
        self._by_topic: dict[str, list[Any]] = {}
        for conn in self._reader.connections:
            self._by_topic.setdefault(conn.topic, []).append(conn)
        self._deser: dict[str, Callable[[Any], Any]] = {}
        self._fast: McapChunks | None = None
        if self.source.storage_format == "mcap" and len(self.source.files) == 1 and self._reader.is2:
            file_compressed = any(getattr(r, "compression_mode", None) for r in self._reader.readers)
            if not file_compressed:
                try:
                    self._fast = McapChunks(self.source.files[0])
                except (LookupError, OSError, ValueError, KeyError):
                    self._fast = None

    @property
    def _fallback_store(self) -> Any:
        return _stock_store(self.source.ros_version)

    # -- metadata -------------------------------------------------------------------------
    @property
    def typestore(self) -> Any:
        """The recording's type store (its embedded definitions plus any hinted stock types)."""
        return self._reader.typestore

    @property
    def cdr(self) -> bool:
        """Whether messages are CDR-serialized (ROS2), not ROS1-serialized."""
        return bool(self._reader.is2)

    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type (ROS2 style, e.g. sensor_msgs/msg/Image, for ROS1 too)."""
        return {t: conns[0].msgtype for t, conns in sorted(self._by_topic.items())}

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self._reader.message_count else 0

    @property
    def end_ns(self) -> int:
        # rosbags reports end as last + 1
        return max(int(self._reader.end_time) - 1, self.start_ns) if self._reader.message_count else 0

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    def message_counts(self) -> dict[str, int]:
        return {t: sum(c.msgcount for c in conns) for t, conns in self._by_topic.items()}

    # -- messages -------------------------------------------------------------------------
    def iter_raw(
        self, topics: Iterable[str] | None = None, start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[RawMessage]:
        """Raw serialized messages in log-time order; `stop_ns` is exclusive."""
        conns = self._connections(topics)
        if topics is not None and not conns:
            return
        if self._fast is not None:
            yield from self._fast.messages(None if topics is None else set(topics), start_ns, stop_ns)
            return
        try:
            for conn, t, data in self._reader.messages(connections=conns, start=start_ns, stop=stop_ns):
                yield RawMessage(conn.topic, t, data, conn.msgtype)
        except RecordingError:
            raise
        except Exception as exc:  # rosbags raises many types for short reads and damage
            if self._file_stamp() != self._stamp:
                raise RecordingError(f"recording changed while it was read: {self.source.path.name}") from None
            raise RecordingError(f"cannot read recording {self.source.path.name}: {exc}") from None

    def _file_stamp(self) -> list[tuple[int, int]]:
        out = []
        for f in self.source.files:
            try:
                st = f.stat()
                out.append((st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((-1, -1))
        return out

    def deserializer(self, msgtype: str) -> Callable[[Any], Any]:
        """A fast callable raw bytes -> rosbags message object for `msgtype` (cached)."""
        fn = self._deser.get(msgtype)
        if fn is None:
            store = self._reader.typestore
            if msgtype not in store.fielddefs:
                # type hints may name a type the recording does not embed
                if msgtype not in self._fallback_store.fielddefs:
                    raise RecordingError(f"unknown message type: {msgtype}")
                store.register({msgtype: self._fallback_store.fielddefs[msgtype]})
                store.register(_dependencies(self._fallback_store, msgtype))
            _decoders_only(store, msgtype)
            msgdef = store.get_msgdef(msgtype)  # the generated functions, called directly
            if self._reader.is2:

                def fn(data, _le=msgdef.deserialize_cdr_le, _m=msgdef, _c=msgdef.cls, _s=store):
                    if len(data) < 4 or data[0] != 0 or data[1] > 1:
                        raise ValueError("invalid or unsupported CDR encapsulation")
                    return (_le if data[1] else _m.deserialize_cdr_be)(data[4:], 0, _c, _s)[0]
            else:

                def fn(data, _d=msgdef.deserialize_ros1, _c=msgdef.cls, _s=store):
                    return _d(data, 0, _c, _s)[0]

            self._deser[msgtype] = fn
        return fn

    def read_messages(
        self,
        topics: Iterable[str] | None = None,
        *,
        start_ns: int | None = None,
        stop_ns: int | None = None,
        on_failure: DecodeFailure = "warn",
        type_hints: dict[str, str] | None = None,
        warnings: list[str] | None = None,
    ) -> Iterator[DecodedMessage]:
        """Decoded messages in time order. Decode failures follow `on_failure`."""
        hints = type_hints or {}
        for raw in self.iter_raw(topics, start_ns, stop_ns):
            msgtype = hints.get(raw.topic, raw.msgtype)
            try:
                msg = self.deserializer(msgtype)(raw.data)
            except Exception as exc:
                if on_failure == "fail":
                    raise RecordingError(f"failed to decode {raw.topic} at {raw.timestamp_ns}: {exc}") from exc
                if on_failure == "warn":
                    note = f"failed to decode {raw.topic} at {raw.timestamp_ns} as {msgtype}: {exc}"
                    if warnings is not None:
                        warnings.append(note)
                    else:
                        print(note, file=sys.stderr)
                continue
            yield DecodedMessage(raw.topic, raw.timestamp_ns, msgtype, msg)

    def _connections(self, topics: Iterable[str] | None) -> list[Any]:
        if topics is None:
            return []
        return [c for t in topics for c in self._by_topic.get(t, ())]

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        if self._reader.stack is not None:
            self._reader.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _DecoderMsgdef:
    """Stands in a typestore's cache for the message definition of one type: its name, fields,
    class and decoders, each decoder generated when first used. rosbags' `get_msgdef` generates
    thirteen functions per type (sizes, serializers, converters; ~0.07 s for the five types of a
    camera/IMU/odometry/cloud recording, a fifth of converting 500 MB of it) where decoding
    needs one. Any other attribute makes the typestore build the complete definition."""

    _DECODERS: ClassVar[dict[str, Callable[[Any, Any], Any]]] = {
        "deserialize_cdr_le": lambda fields, store: generate_deserialize_cdr(fields, store, "le"),
        "deserialize_cdr_be": lambda fields, store: generate_deserialize_cdr(fields, store, "be"),
        "deserialize_ros1": lambda fields, store: generate_deserialize_ros1(fields, store),
    }

    def __init__(self, store: Any, name: str):
        self._store, self._complete, self.name = store, None, name
        self.fields = [(normalize_fieldname(n), desc) for n, desc in store.fielddefs[name][1]]
        self.cls = store.types[name]

    def __getattr__(self, attr: str) -> Any:  # only for attributes not set yet
        make = self._DECODERS.get(attr)
        if make is not None:
            fn = make(self.fields, self._store)
            setattr(self, attr, fn)
            return fn
        if self._complete is None:
            self._store.cache.pop(self.name, None)  # the typestore builds and caches the complete one
            self._complete = self._store.get_msgdef(self.name)
        return getattr(self._complete, attr)


def _decoders_only(store: Any, msgtype: str) -> None:
    """Put decoder-only definitions of `msgtype` and the types it uses in the typestore's cache
    (where the rosbags in use has one)."""
    cache = getattr(store, "cache", None)
    if generate_deserialize_cdr is None or not isinstance(cache, dict):
        return
    for name in [msgtype, *_dependencies(store, msgtype)]:
        if name not in cache:
            cache[name] = _DecoderMsgdef(store, name)


def _type_ref(desc: Any) -> str | None:
    """Name of the message type a field descriptor points to (through arrays), if any."""
    kind, spec = desc
    if kind == 2:  # Nodetype.NAME
        return spec
    if kind in (3, 4):  # ARRAY, SEQUENCE: spec = (element descriptor, size)
        return _type_ref(spec[0])
    return None


def _dependencies(store: Any, msgtype: str) -> dict[str, Any]:
    """Field definitions of every type `msgtype` refers to, recursively."""
    out: dict[str, Any] = {}
    todo = [msgtype]
    while todo:
        for _fname, desc in store.fielddefs[todo.pop()][1]:
            ref = _type_ref(desc)
            if ref and ref not in out and ref in store.fielddefs:
                out[ref] = store.fielddefs[ref]
                todo.append(ref)
    return out


def open_recording(path: str | Path) -> RecordingReader:
    """Open any supported recording; raises RecordingError with a user-safe message."""
    return RecordingReader(path)
