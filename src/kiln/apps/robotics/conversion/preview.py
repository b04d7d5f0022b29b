"""Preview (preflight) of a spec: the first rows, built exactly as the conversion would.

`preview(path_or_paths, spec, n=5, topic_type_hints=None) -> PreviewResult`. Reading stops
as soon as enough rows exist, so the cost depends on n, not on the recording's length.
`PreviewResult.to_dict()` has the reference payload shape: rows [{timestamp_ns,
field_data, presence_data}], dropped_count, checked_records, bad_records, missing feature
and topic counts/rates, label_summary, warnings, preflight_ok.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from kiln.apps.robotics.assets.indexing import index_recording
from kiln.apps.robotics.conversion.features import FeatureBuilder, RowDropped
from kiln.apps.robotics.conversion.job import expected_topics
from kiln.apps.robotics.conversion.pipeline import Decoder, resolve_spec, row_iterator
from kiln.apps.robotics.conversion.rows import RowStats
from kiln.apps.robotics.conversion.values import to_jsonable
from kiln.apps.robotics.reading.reader import open_recording
from kiln.apps.robotics.spec.migrate import load_spec
from kiln.apps.robotics.spec.models import ConversionSpec, DecodingSpec, TopicDecoding


@dataclass
class PreviewResult:
    rows: list[dict[str, Any]]
    dropped_count: int
    checked_records: int
    bad_records: int
    missing_feature_counts: dict[str, int]
    missing_feature_rates: dict[str, float]
    missing_topic_counts: dict[str, int]
    missing_topic_rates: dict[str, float]
    label_summary: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    @property
    def preflight_ok(self) -> bool:
        return self.bad_records == 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "preflight_ok": self.preflight_ok}


def with_type_hints(spec: ConversionSpec, hints: dict[str, str] | None) -> ConversionSpec:
    if not hints:
        return spec
    topics = dict(spec.decoding.topics)
    for topic, hint in hints.items():
        cur = topics.get(topic) or TopicDecoding()
        topics[topic] = cur.model_copy(update={"type_hint": hint})
    return spec.model_copy(
        update={"decoding": DecodingSpec(topics=topics, on_decode_failure=spec.decoding.on_decode_failure)}
    )


def preview(
    path_or_paths: str | Path | Sequence[str | Path],
    spec: ConversionSpec | dict[str, Any],
    n: int = 5,
    *,
    topic_type_hints: dict[str, str] | None = None,
) -> PreviewResult:
    spec = spec if isinstance(spec, ConversionSpec) else load_spec(spec)
    if spec.row_strategy is None and not spec.mapping:
        raise ValueError("preview requires a schema-aware conversion spec with row_strategy")
    if spec.row_strategy is not None and not spec.features:
        raise ValueError("preview requires feature definitions")
    if n < 1:
        raise ValueError("preview needs n >= 1")
    spec = with_type_hints(spec, topic_type_hints)
    path = path_or_paths if isinstance(path_or_paths, str | Path) else next(iter(path_or_paths))
    need = max(n, spec.validation.sample_n)
    idx = index_recording(path)
    with open_recording(path) as reader:
        resolved = resolve_spec(spec, reader.topics)
        rspec = resolved.spec
        decoder = Decoder(reader, rspec)
        stats = RowStats()
        builder = FeatureBuilder(rspec)
        rows_it = row_iterator(
            reader,
            resolved,
            decoder,
            stats,
            bounds={t.name: (t.first_ns, t.last_ns) for t in idx.topics},
            counts={t.name: t.message_count for t in idx.topics},
        )
        rows: list[dict[str, Any]] = []
        checked = bad = dropped = 0
        missing_topics: dict[str, int] = {}
        label_values: list[Any] = []
        label_present = 0
        watched = expected_topics(rspec)
        primary = rspec.labels.primary if rspec.labels else None
        budget = rspec.validation.bad_record_budget
        for row in islice(rows_it, need):
            try:
                values, presence, is_bad = builder.build(row)
            except RowDropped:
                dropped += 1
                continue
            checked += 1
            if is_bad:
                bad += 1
                if rspec.validation.fail_fast or (budget is not None and bad > budget):
                    raise ValueError(
                        f"preview found a bad record at {row.timestamp_ns} ns (a required feature has no value)"
                    )
            for topic in watched:
                if topic not in row.topics:
                    missing_topics[topic] = missing_topics.get(topic, 0) + 1
            if primary is not None and presence.get(primary):
                label_present += 1
                if len(label_values) < 5:
                    label_values.append(to_jsonable(values[primary]))
            if len(rows) < n:
                rows.append(
                    {
                        "timestamp_ns": row.timestamp_ns,
                        "field_data": {k: to_jsonable(v) for k, v in values.items()},
                        "presence_data": presence,
                    }
                )
        missing_features = dict(builder.counters.missing)

    def rate(counts: dict[str, int]) -> dict[str, float]:
        return {k: round(v / checked, 6) if checked else 0.0 for k, v in counts.items()}

    label_summary = None
    if primary is not None:
        label_summary = {
            "primary": primary,
            "present_count": label_present,
            "missing_count": checked - label_present,
            "sample_values": label_values,
        }
    return PreviewResult(
        rows,
        dropped + stats.dropped,
        checked,
        bad,
        missing_features,
        rate(missing_features),
        missing_topics,
        rate(missing_topics),
        label_summary,
        stats.warnings + decoder.warnings + builder.counters.first_errors,
    )
