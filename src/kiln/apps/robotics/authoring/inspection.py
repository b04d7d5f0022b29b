"""Inspect a recording: decoded samples per topic and the fields worth turning into features.

`inspect_recording(path, topics=None, sample_n=8, max_depth=4, max_sequence_items=4,
on_failure="warn", topic_type_hints=None) -> InspectionResult`. Each topic is read on its
own and only until `sample_n` messages are decoded, so a sparse topic does not make the
whole file be read. Payload summaries are JSON-safe and bounded by depth and item count;
dunder members of rosbags messages (`__msgtype__`) never appear.
`InspectionResult.to_dict()` has the reference shape: {bag_path, ros_version, sample_n,
topics: {topic: {topic, message_type, sampled_message_count, sample_timestamps,
sample_payloads, top_level_summary, field_candidates, warnings}}, warnings}.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from kiln.apps.robotics.conversion.values import is_image_message, is_message, message_fields, to_jsonable
from kiln.apps.robotics.reading.reader import RecordingError, open_recording

_IMAGE_WORDS = ("image", "rgb", "bgr", "depth", "camera", "img")


@dataclass
class FieldCandidate:
    path: str
    kind: str  # scalar | sequence | struct | bytes | image | unknown
    examples: list[Any] = field(default_factory=list)
    nullable: bool = False
    candidate_dtypes: list[str] = field(default_factory=list)
    shape_hint: list[int] | None = None
    variable_length: bool = False
    image_like: bool = False
    confidence: float = 0.25
    warnings: list[str] = field(default_factory=list)
    numeric_leaves: list[str] = field(default_factory=list)  # small numeric structs (Vector3, Quaternion)


@dataclass
class TopicInspection:
    topic: str
    message_type: str
    sampled_message_count: int
    sample_timestamps: list[int]
    sample_payloads: list[dict[str, Any]]
    top_level_summary: dict[str, str]
    field_candidates: dict[str, FieldCandidate]
    warnings: list[str] = field(default_factory=list)


@dataclass
class InspectionResult:
    bag_path: str
    ros_version: str
    sample_n: int
    topics: dict[str, TopicInspection]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kind(v: Any) -> str:
    if isinstance(v, bytes | bytearray) or (isinstance(v, np.ndarray) and v.dtype == np.uint8):
        return "bytes"
    if isinstance(v, np.ndarray | list | tuple):
        return "sequence"
    if is_message(v) or isinstance(v, dict):
        return "struct"
    if isinstance(v, bool | int | float | str | np.generic):
        return "scalar"
    return "unknown"


def _dtypes(v: Any, kind: str) -> list[str]:
    if kind in ("bytes", "image"):
        return ["bytes"]
    if kind == "struct":
        return ["json"]
    sample = v
    if kind == "sequence":
        arr = np.asarray(v) if not (isinstance(v, list) and v and is_message(v[0])) else None
        if arr is None or arr.dtype == object:
            return ["json"]
        sample = arr.dtype.type(0) if arr.size == 0 else arr.reshape(-1)[0]
    if isinstance(sample, bool | np.bool_):
        return ["bool", "int64"]
    if isinstance(sample, int | np.integer):
        return ["int64", "float32", "float64"]
    if isinstance(sample, float | np.floating):
        return ["float32", "float64"]
    if isinstance(sample, str):
        return ["bytes", "json"]
    return ["json"]


def _image_like(topic: str, path: str, value: Any) -> bool:
    low = path.lower()
    if any(w in low for w in _IMAGE_WORDS):
        return True
    leaf = low.split(".")[-1]
    if leaf in ("data", "pixels", "frame") and any(w in topic.lower() for w in _IMAGE_WORDS):
        return True
    return is_image_message(value)


def _walk(topic: str, obj: Any, prefix: str, depth: int, max_depth: int, out: dict[str, list[Any]]) -> None:
    for name in message_fields(obj) if is_message(obj) else [k for k in obj if not str(k).startswith("__")]:
        value = getattr(obj, name) if is_message(obj) else obj[name]
        path = f"{prefix}{name}"
        out.setdefault(path, []).append(value)
        if (is_message(value) or isinstance(value, dict)) and depth + 1 < max_depth:
            _walk(topic, value, path + ".", depth + 1, max_depth, out)


def _candidate(topic: str, path: str, values: list[Any], n_samples: int, max_items: int) -> FieldCandidate:
    present = [v for v in values if v is not None]
    first = present[0] if present else None
    kind = _kind(first)
    image = _image_like(topic, path, first) and kind in ("bytes", "struct", "sequence")
    if image and kind == "bytes":
        kind = "image"
    cand = FieldCandidate(path=path, kind=kind, nullable=len(present) < n_samples)
    cand.examples = [to_jsonable(v, max_depth=2, max_items=max_items) for v in present[:3]]
    cand.candidate_dtypes = _dtypes(first, kind)
    cand.image_like = image
    if kind in ("sequence", "bytes", "image"):
        lengths = {len(v) for v in present}
        cand.variable_length = len(lengths) > 1
        cand.shape_hint = [-1] if cand.variable_length else [next(iter(lengths), 0)]
    elif kind == "scalar":
        cand.shape_hint = []
    if kind == "struct" and (is_message(first) or isinstance(first, dict)):
        leaves = message_fields(first) if is_message(first) else list(first)
        vals = [getattr(first, k) if is_message(first) else first[k] for k in leaves]
        if leaves and all(isinstance(x, int | float | np.number) and not isinstance(x, bool) for x in vals):
            cand.numeric_leaves = leaves
            cand.candidate_dtypes = ["float32", "float64", "json"]
            cand.shape_hint = [len(leaves)]
    cand.confidence = {
        "image": 1.0,
        "scalar": 0.9 if cand.candidate_dtypes[0] != "bytes" else 0.5,
        "sequence": 0.6 if cand.variable_length else 0.8,
        "bytes": 0.7,
        "struct": 0.7 if cand.numeric_leaves else 0.4,
    }.get(kind, 0.25)
    if cand.nullable:
        cand.warnings.append("missing in some samples")
    if kind == "sequence" and cand.candidate_dtypes == ["json"]:
        cand.warnings.append("sequence of structures: only usable as json")
    return cand


def inspect_recording(
    path: str | Path,
    topics: list[str] | None = None,
    sample_n: int = 8,
    max_depth: int = 4,
    max_sequence_items: int = 4,
    on_failure: str = "warn",
    topic_type_hints: dict[str, str] | None = None,
) -> InspectionResult:
    if sample_n < 1 or max_depth < 1 or max_sequence_items < 1:
        raise ValueError("sample_n, max_depth and max_sequence_items must be >= 1")
    result_topics: dict[str, TopicInspection] = {}
    warnings: list[str] = []
    with open_recording(path) as reader:
        available = reader.topics
        wanted = list(dict.fromkeys(t.strip() for t in topics if t.strip())) if topics else list(available)
        unknown = [t for t in wanted if t not in available]
        if unknown:
            raise RecordingError(f"topics not found in recording: {', '.join(unknown)}")
        for topic in wanted:
            notes: list[str] = []
            msgs = list(
                islice(
                    reader.read_messages(
                        [topic],
                        on_failure=on_failure,  # type: ignore[arg-type]
                        type_hints=topic_type_hints,
                        warnings=notes,
                    ),
                    sample_n,
                )
            )
            paths: dict[str, list[Any]] = {}
            for m in msgs:
                _walk(topic, m.message, "", 0, max_depth, paths)
            first = msgs[0].message if msgs else None
            summary = {}
            if first is not None:
                for name in message_fields(first):
                    v = getattr(first, name)
                    summary[name] = getattr(v, "__msgtype__", None) or (
                        f"{_kind(v)}[{len(v)}]" if _kind(v) in ("bytes", "sequence") else type(v).__name__
                    )
            if not msgs:
                notes.append("no message could be sampled from this topic")
            result_topics[topic] = TopicInspection(
                topic=topic,
                message_type=(topic_type_hints or {}).get(topic, available[topic]),
                sampled_message_count=len(msgs),
                sample_timestamps=[m.timestamp_ns for m in msgs],
                sample_payloads=[
                    {
                        "timestamp": m.timestamp_ns,
                        "payload": to_jsonable(m.message, max_depth=max_depth, max_items=max_sequence_items),
                    }
                    for m in msgs
                ],
                top_level_summary=summary,
                field_candidates={p: _candidate(topic, p, v, len(msgs), max_sequence_items) for p, v in paths.items()},
                warnings=notes[:10],
            )
        ros = reader.source.ros_version
    return InspectionResult(str(Path(path).resolve()), ros, sample_n, result_topics, warnings)
