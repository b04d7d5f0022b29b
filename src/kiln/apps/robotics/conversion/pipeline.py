"""From an open recording and a spec to a stream of rows (shared by preview and conversion).

`resolve_spec(spec, topics)` turns a legacy mapping into an equivalent schema-aware spec
for this recording; `row_iterator(reader, spec, ...)` wires the lazily decoded message
stream, the time window and the row strategy together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kiln.apps.robotics.conversion.rows import (
    Msg,
    Row,
    RowStats,
    grid_origin,
    per_message_rows,
    resample_rows,
    trigger_rows,
    union_rows,
)
from kiln.apps.robotics.reading.reader import RecordingError, RecordingReader
from kiln.apps.robotics.spec.models import (
    ConversionSpec,
    FeatureSpec,
    PathSource,
    PerMessageStrategy,
    ResampleStrategy,
    TriggerStrategy,
)

CHECK_EVERY = 256  # messages between cancellation checks / progress reports


class ConversionCancelled(Exception):
    pass


@dataclass
class Resolved:
    spec: ConversionSpec
    mapping_resolved: dict[str, str] | None = None  # legacy: target -> topic used
    union: bool = False  # legacy without resample: a row per distinct timestamp


def resolve_spec(spec: ConversionSpec, topics: dict[str, str]) -> Resolved:
    """Check the spec against this recording; legacy mappings become path features."""
    if spec.schema_aware:
        if spec.row_strategy is None:
            raise ValueError("conversion requires a row_strategy")
        return Resolved(spec)
    if spec.row_strategy is not None and not spec.features:
        raise ValueError("conversion spec has a row_strategy but no features")
    if not spec.mapping:
        raise ValueError("conversion spec needs either row_strategy + features or a legacy mapping")
    resolved = {target: next((t for t in cands if t in topics), None) for target, cands in spec.mapping.items()}
    resolved = {k: v for k, v in resolved.items() if v is not None}
    if not resolved:
        raise ValueError("No requested topics from mapping were found in bag")
    features = {target: FeatureSpec(source=PathSource(topic=topic), dtype="json") for target, topic in resolved.items()}
    rs = None
    if spec.resample is not None:
        rs = ResampleStrategy(
            freq_hz=spec.resample.freq_hz, method=spec.resample.method, topics=sorted(set(resolved.values()))
        )
    internal = spec.model_copy(update={"features": features, "row_strategy": rs})
    return Resolved(internal, resolved, union=rs is None)


@dataclass
class Decoder:
    """Lazy decoding with type hints and per-topic failure policies."""

    reader: RecordingReader
    spec: ConversionSpec
    warnings: list[str] = field(default_factory=list)
    failures: int = 0

    def __post_init__(self) -> None:
        dec = self.spec.decoding
        self._hints = {t: d.type_hint for t, d in dec.topics.items() if d.type_hint}
        self._policy = {t: d.on_failure or dec.on_decode_failure for t, d in dec.topics.items()}
        self._default = dec.on_decode_failure
        self._fns: dict[str, Callable[[Any], Any]] = {}

    def msgtype(self, topic: str, recorded: str) -> str:
        return self._hints.get(topic, recorded)

    def __call__(self, m: Msg) -> Any:
        fn = self._fns.get(m.msgtype)
        try:
            if fn is None:
                fn = self._fns[m.msgtype] = self.reader.deserializer(m.msgtype)
            return fn(m.data)
        except Exception as exc:
            self.failures += 1
            policy = self._policy.get(m.topic, self._default)
            note = f"failed to decode {m.topic} at {m.t} as {m.msgtype}: {exc}"
            if policy == "fail":
                raise RecordingError(note) from exc
            if policy == "warn" and len(self.warnings) < 20:
                self.warnings.append(note)
            return None


def message_stream(
    reader: RecordingReader,
    topics: list[str],
    decoder: Decoder,
    start: int | None,
    stop: int | None,
    tick: Callable[[int], None] | None = None,
    max_messages: int | None = None,
) -> Iterator[Msg]:
    for n, raw in enumerate(reader.iter_raw(topics, start, stop), start=1):
        yield Msg(raw.topic, raw.timestamp_ns, raw.data, decoder.msgtype(raw.topic, raw.msgtype), decoder)
        if tick is not None and n % CHECK_EVERY == 0:
            tick(raw.timestamp_ns)
        if max_messages is not None and n >= max_messages:
            return


def last_before(reader: RecordingReader, topic: str, t: int, decoder: Decoder) -> Msg | None:
    """The last message of `topic` strictly before `t`, searching back in growing windows."""
    start, span = reader.start_ns, 1_000_000_000
    while True:
        lo = max(start, t - span)
        found = None
        for raw in reader.iter_raw([topic], lo, t):
            found = raw
        if found is not None:
            return Msg(found.topic, found.timestamp_ns, found.data, decoder.msgtype(topic, found.msgtype), decoder)
        if lo <= start:
            return None
        span *= 4


def row_iterator(
    reader: RecordingReader,
    resolved: Resolved,
    decoder: Decoder,
    stats: RowStats,
    *,
    window: tuple[int | None, int | None] = (None, None),
    bounds: dict[str, tuple[int | None, int | None]] | None = None,
    counts: dict[str, int] | None = None,
    tick: Callable[[int], None] | None = None,
) -> Iterator[Row]:
    """Rows whose time lies in `window` (and in the spec's input window).

    `bounds` (topic -> first/last log time) and `counts` come from the recording's index;
    resampling needs them for its grid and to stop waiting for finished topics.
    """
    spec = resolved.spec
    lo, hi = window
    if spec.input.start_ns is not None:
        lo = spec.input.start_ns if lo is None else max(lo, spec.input.start_ns)
    if spec.input.end_ns is not None:
        hi = spec.input.end_ns + 1 if hi is None else min(hi, spec.input.end_ns + 1)
    rs = spec.row_strategy
    present = reader.topics
    topics = [t for t in spec.topics_needed() if t in present]
    if resolved.union:
        topics = sorted(set(resolved.mapping_resolved.values()))
    cap = spec.input.max_messages

    def stream(start: int | None) -> Iterator[Msg]:
        return message_stream(reader, topics, decoder, start, None, tick, cap)

    if resolved.union:
        return union_rows(stream(lo), lo, hi)
    if isinstance(rs, PerMessageStrategy):
        if rs.topic not in present:
            raise ValueError(f"row topic not found in recording: {rs.topic}")
        return per_message_rows(stream(lo), rs.topic, lo, hi)
    if isinstance(rs, TriggerStrategy):
        if rs.trigger_topic not in present:
            raise ValueError(f"trigger topic not found in recording: {rs.trigger_topic}")
        seeds = {}
        if lo is not None and lo > reader.start_ns:
            for j in rs.joins:
                if j.topic in present and (m := last_before(reader, j.topic, lo, decoder)) is not None:
                    seeds[j.topic] = m
        return trigger_rows(stream(lo), rs, stats, lo, hi, seeds)
    assert isinstance(rs, ResampleStrategy)
    rs_topics = [t for t in rs.topics if t in present]
    if not rs_topics:
        raise ValueError("none of the resample topics are in the recording")
    rs = rs.model_copy(
        update={"topics": rs_topics, "anchor_topic": rs.anchor_topic if rs.anchor_topic in rs_topics else None}
    )
    bounds = bounds or {}
    origin = grid_origin(rs, {t: bounds.get(t, (None, None))[0] for t in rs_topics})
    lasts = [bounds[t][1] for t in rs_topics if t in bounds and bounds[t][1] is not None]
    if origin is None:
        return iter(())
    end = max(lasts) if lasts else reader.end_ns
    seeds = {}
    whole = lo is None or lo <= reader.start_ns
    if rs.method == "interpolate" and not whole:
        for topic in rs_topics:
            if (m := last_before(reader, topic, lo, decoder)) is not None:
                seeds[topic] = m
    expected = counts if (whole and hi is None and spec.input.start_ns is None and cap is None) else None
    return resample_rows(stream(lo), rs, origin, end, lo, hi, seeds, expected)
