"""One unit of conversion work: one recording (episode), one time window (shard).

`convert_window(job)` is a plain picklable function so the engine can run it inline or in
a worker process. It streams rows into per-split writers, then writes the sidecars.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.apps.robotics.assets.indexing import index_recording
from kiln.apps.robotics.conversion import cdr_columns
from kiln.apps.robotics.conversion.collector import fewer_collections
from kiln.apps.robotics.conversion.features import FeatureBuilder, FeatureCounters, RowDropped
from kiln.apps.robotics.conversion.messages import Column, message_column
from kiln.apps.robotics.conversion.pipeline import ConversionCancelled, Decoder, resolve_spec, row_iterator
from kiln.apps.robotics.conversion.rows import Msg, RowStats
from kiln.apps.robotics.conversion.sidecars import build_manifest, write_sidecars
from kiln.apps.robotics.conversion.writers import MessageParquetWriter, make_writer
from kiln.apps.robotics.reading import bounds as read_bounds
from kiln.apps.robotics.reading.reader import open_recording
from kiln.apps.robotics.spec.models import ConversionSpec, ResampleStrategy, SplitSpec, TriggerStrategy


class BadRecordError(ValueError):
    pass


@dataclass
class WindowJob:
    path: str
    episode_id: str
    spec: dict[str, Any]  # ConversionSpec as JSON (cheap to pickle, validated in the worker)
    output_dir: str
    window: tuple[int | None, int | None]
    shard_index: int
    num_shards: int
    max_chunk_bytes: int = field(default_factory=read_bounds.limit)  # carried into worker processes
    max_ratio: int = field(default_factory=read_bounds.ratio)


@dataclass
class WindowOutcome:
    episode_id: str
    path: str
    shard_index: int
    files: list[dict[str, Any]] = field(default_factory=list)
    rows_written: int = 0
    dropped_rows: int = 0
    bad_records: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    missing_feature_counts: dict[str, int] = field(default_factory=dict)
    missing_topic_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    mapping_resolved: dict[str, str] | None = None


def dataset_filename(output: Any, episode_id: str, split: str | None, shard: int, num_shards: int) -> str:
    ext = output.format
    if output.filename_template:
        name = output.filename_template.format(
            episode_id=episode_id,
            split=split or "all",
            shard=shard,
            shard_index=shard,
            num_shards=num_shards,
            extension=ext,
        )
        return name if "." in name else f"{name}.{ext}"
    base = episode_id + (f"-{split}" if split else "")
    if num_shards > 1:
        base += f"-{shard:05d}-of-{num_shards:05d}"
    return f"{base}.{ext}"


def dataset_path(outdir: Path, output: Any, episode_id: str, split: str | None, shard: int, num_shards: int) -> Path:
    """Where a dataset file goes; refuses any name that would leave the run's folder."""
    name = dataset_filename(output, episode_id, split, shard, num_shards)
    folder = outdir.resolve()
    path = (folder / name).resolve()
    if path.parent != folder or "\x00" in name:
        raise ValueError(f"output file name leaves the run folder: {name!r}")
    return path


def split_router(split: SplitSpec, start: int, end: int) -> Callable[[int], str | None]:
    if split.strategy == "none":
        return lambda t: None
    train, val = split.train_fraction or 0.0, split.val_fraction or 0.0
    if split.strategy == "time":
        span = max(end - start, 1)

        def by_time(t: int) -> str:
            f = (t - start) / span
            return "train" if f < train else "val" if f < train + val else "test"

        return by_time
    seed = split.seed & 0xFFFFFFFFFFFFFFFF

    def by_hash(t: int) -> str:
        # splitmix64 of (seed, timestamp): the same row lands in the same split in any window
        z = (t ^ (seed * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        f = ((z ^ (z >> 31)) >> 11) / float(1 << 53)
        return "train" if f < train else "val" if f < train + val else "test"

    return by_hash


def expected_topics(spec: ConversionSpec) -> list[str]:
    rs = spec.row_strategy
    if isinstance(rs, TriggerStrategy):
        return [j.topic for j in rs.joins]
    if isinstance(rs, ResampleStrategy):
        return list(rs.topics)
    return []


def convert_window(job: WindowJob, tick: Callable[[float], None] | None = None) -> WindowOutcome:
    """Convert one window; `tick(fraction)` is called often and may raise ConversionCancelled."""
    read_bounds.set_limit(job.max_chunk_bytes, job.max_ratio)
    spec = ConversionSpec.model_validate(job.spec)
    idx = index_recording(job.path)
    out = WindowOutcome(job.episode_id, job.path, job.shard_index)
    lo, hi = job.window
    w_lo = lo if lo is not None else (idx.start_ns or 0)
    w_hi = hi if hi is not None else (idx.end_ns or w_lo) + 1
    span = max(w_hi - w_lo, 1)

    def on_time(t: int) -> None:
        if tick is not None:
            tick(min(max((t - w_lo) / span, 0.0), 1.0))

    outdir = Path(job.output_dir)
    writers: dict[str | None, Any] = {}
    paths: dict[str | None, Path] = {}
    with open_recording(job.path) as reader, fewer_collections():
        resolved = resolve_spec(spec, reader.topics)
        rspec = resolved.spec
        out.mapping_resolved = resolved.mapping_resolved
        decoder = Decoder(reader, rspec)
        stats = RowStats()
        builder: Any = FeatureBuilder(rspec)
        make = make_writer
        if (
            resolved.mapping_resolved is not None
            and rspec.output.format == "parquet"
            and not (isinstance(rspec.row_strategy, ResampleStrategy) and rspec.row_strategy.method == "interpolate")
        ):
            builder = LegacyMessages(reader, decoder, resolved.mapping_resolved)
            make = builder.writer
        bounds = {t.name: (t.first_ns, t.last_ns) for t in idx.topics}
        counts = {t.name: t.message_count for t in idx.topics}
        route = split_router(rspec.split, idx.start_ns or 0, idx.end_ns or 0)
        watched = expected_topics(rspec)
        budget = rspec.validation.bad_record_budget
        first_ns = last_ns = None
        try:
            for row in row_iterator(
                reader, resolved, decoder, stats, window=job.window, bounds=bounds, counts=counts, tick=on_time
            ):
                try:
                    values, presence, bad = builder.build(row)
                except RowDropped:
                    out.dropped_rows += 1
                    continue
                if bad:
                    out.bad_records += 1
                    if rspec.validation.fail_fast or (budget is not None and out.bad_records > budget):
                        raise BadRecordError(
                            f"bad record at {row.timestamp_ns} ns: a required feature has no value "
                            f"({out.bad_records} bad records, budget {budget if budget is not None else 'none'})"
                        )
                    continue
                split = route(row.timestamp_ns)
                w = writers.get(split)
                if w is None:
                    paths[split] = dataset_path(
                        outdir, rspec.output, job.episode_id, split, job.shard_index, job.num_shards
                    )
                    w = writers[split] = make(paths[split], rspec.features, rspec.output)
                w.add(row.timestamp_ns, values, presence, values.pop(_SIZE, None))
                out.split_counts[split or "all"] = out.split_counts.get(split or "all", 0) + 1
                for topic in watched:
                    if topic not in row.topics:
                        out.missing_topic_counts[topic] = out.missing_topic_counts.get(topic, 0) + 1
                first_ns = row.timestamp_ns if first_ns is None else first_ns
                last_ns = row.timestamp_ns
            if not writers:  # an empty shard still yields a valid (empty) dataset file
                paths[None] = dataset_path(
                    outdir,
                    rspec.output,
                    job.episode_id,
                    None if rspec.split.strategy == "none" else "train",
                    job.shard_index,
                    job.num_shards,
                )
                writers[None] = make(paths[None], rspec.features, rspec.output)
            rows_by_split = {s: w.close() for s, w in writers.items()}
        except BaseException:
            for s, w in writers.items():
                w.abort()
                paths[s].unlink(missing_ok=True)
            raise
        out.dropped_rows += stats.dropped
        out.rows_written = sum(rows_by_split.values())
        out.missing_feature_counts = dict(builder.counters.missing)
        out.warnings = stats.warnings + decoder.warnings + builder.counters.first_errors
    source = {
        "path": str(idx.path),
        "ros_version": idx.ros_version,
        "storage_format": idx.storage_format,
        "file_size_bytes": idx.file_size_bytes,
        "metadata": idx.to_metadata(),
    }
    for split, path in paths.items():
        rows = rows_by_split[split]
        entry = {
            "path": str(path),
            "role": "dataset",
            "format": rspec.output.format,
            "rows": rows,
            "split": split or "all",
            "shard_index": job.shard_index,
            "episode_id": job.episode_id,
            "source_path": job.path,
        }
        out.files.append(entry)
        if rspec.output.write_manifest and spec.write_manifest:
            stats_d = {
                "bad_records": out.bad_records,
                "dropped_rows": out.dropped_rows,
                "split_counts": out.split_counts,
                "missing_feature_counts": out.missing_feature_counts,
                "missing_topic_counts": out.missing_topic_counts,
                "decode_failures": decoder.failures,
                "first_ns": first_ns,
                "last_ns": last_ns,
            }
            manifest = build_manifest(
                dataset=path,
                spec=spec,
                episode_id=job.episode_id,
                source=source,
                rows_written=rows,
                split_name=split or "all",
                shard_index=job.shard_index,
                num_shards=job.num_shards,
                stats=stats_d,
                mapping_resolved=resolved.mapping_resolved,
            )
            mpath, rpath = write_sidecars(path, manifest)
            common = {k: entry[k] for k in ("split", "shard_index", "episode_id", "source_path")}
            out.files.append({"path": str(mpath), "role": "manifest", "format": "json", "rows": None, **common})
            out.files.append({"path": str(rpath), "role": "report", "format": "md", "rows": None, **common})
    return out


_SIZE = "\x00nbytes"


class LegacyMessages:
    """The legacy per-topic layout for Parquet: each mapped topic's whole message as a typed
    struct column (see `messages.py`), without the per-feature JSON round trip."""

    def __init__(self, reader: Any, decoder: Decoder, mapping: dict[str, str]):
        self.mapping = mapping
        self.columns: dict[str, Column] = {}
        self._raw: set[str] = set()  # columns fed raw messages, decoded when their row group is built
        self._by_topic: dict[str, list[str]] = {}
        for name, topic in mapping.items():
            self._by_topic.setdefault(topic, []).append(name)
            msgtype = decoder.msgtype(topic, reader.topics[topic])
            reader.deserializer(msgtype)  # registers a hinted type the recording does not embed
            column = message_column(reader.typestore, msgtype)
            if reader.cdr and cdr_columns.supported(reader.typestore, msgtype):
                column = cdr_columns.CdrTopicColumn(
                    column, reader.typestore, msgtype, Msg.value, functools.partial(self._failed, name)
                )
                self._raw.add(name)
            self.columns[name] = column
        # rows built, values handed to the writer and raw messages that failed to decode, per column:
        # counted rather than a miss noted per absent topic and row (most rows hold one topic of many)
        self._rows = 0
        self._delivered = dict.fromkeys(mapping, 0)
        self._failures = dict.fromkeys(mapping, 0)
        self._counters = FeatureCounters()

    def _failed(self, name: str) -> None:
        self._failures[name] += 1

    @property
    def counters(self) -> FeatureCounters:
        """Rows without a value per column (no message of the topic, or one that failed to decode)."""
        missing = {n: self._rows - self._delivered[n] + self._failures[n] for n in self.mapping}
        self._counters.missing = {n: count for n, count in missing.items() if count}
        return self._counters

    def build(self, row: Any) -> tuple[dict[str, Any], dict[str, int], bool]:
        values: dict[str, Any] = {}
        size = 8
        self._rows += 1
        for topic, m in row.topics.items():
            names = self._by_topic.get(topic, ())
            if not names:
                continue
            # a message mapped twice counts its bytes once (its raw data was dropped once decoded)
            size += (len(m.data) if m.data is not None else 64) + 64 * (len(names) - 1)
            for name in names:
                v = m if name in self._raw else m.value()
                if v is not None:
                    values[name] = v
                    self._delivered[name] += 1
        values[_SIZE] = size
        return values, {}, False

    def writer(self, path: Path, _features: Any, output: Any) -> MessageParquetWriter:
        return MessageParquetWriter(path, self.columns, output)


def plan_windows(
    start: int | None, end: int | None, n: int, spec: ConversionSpec, origin: int | None = None
) -> list[tuple[int | None, int | None]]:
    """n contiguous windows covering the recording; edges on the resample grid when resampling."""
    if n <= 1:
        return [(None, None)]
    if start is None or end is None or end <= start:
        return [(None, None)] + [(0, 0)] * (n - 1)  # nothing to spread: later shards stay empty
    edges = [start + (end - start + 1) * k // n for k in range(1, n)]
    rs = spec.row_strategy
    if isinstance(rs, ResampleStrategy) and origin is not None:
        period = 1e9 / rs.freq_hz
        edges = [origin + int(round(math.ceil((e - origin) / period) * period)) for e in edges]
    bounds: list[int | None] = [None, *edges, None]
    return [(bounds[k], bounds[k + 1]) for k in range(n)]


class Ticker:
    """Throttles progress reports and checks cancellation between chunks."""

    def __init__(self, report: Callable[[float], None], cancelled: Callable[[], bool], every_s: float = 0.2):
        self.report, self.cancelled, self.every = report, cancelled, every_s
        self._last = 0.0

    def __call__(self, fraction: float) -> None:
        if self.cancelled():
            raise ConversionCancelled("conversion cancelled")
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.report(fraction)
