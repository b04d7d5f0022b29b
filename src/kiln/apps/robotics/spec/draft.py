"""Draft a conversion spec from an inspection.

`build_draft(inspection, request, path=None) -> DraftResult`: picks a trigger topic (the
most image-like, unless given), joins the other selected topics (last-known-before, not
required), keeps the best `max_features_per_topic` fields per topic (images, buttons,
axes, bytes, numeric vectors and sequences, scalars; never header bookkeeping or dunder
members) and optionally previews the draft on the inspected recording.
`DraftResult.to_dict()`: {request, spec, selected_topics, trigger_topic, join_topics,
warnings, assumptions, unresolved_fields, preview}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kiln.apps.robotics.spec.models import (
    ConversionSpec,
    DecodingSpec,
    DraftOrigin,
    FeatureSpec,
    JoinSpec,
    LabelsSpec,
    OutputSpec,
    SchemaSpec,
    TopicDecoding,
    TransformSpec,
    TriggerStrategy,
    ValidationSpec,
)

_SKIP_LEAVES = {
    "seq",
    "frame_id",
    "child_frame_id",
    "encoding",
    "is_bigendian",
    "step",
    "point_step",
    "row_step",
    "is_dense",
    "format",
}


class DraftRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trigger_topic: str | None = None
    selected_topics: list[str] = Field(default_factory=list)
    join_topics: list[str] = Field(default_factory=list)
    schema_name: str = "draft_conversion"
    schema_version: int = Field(1, ge=1)
    output_format: Literal["parquet", "tfrecord"] = "tfrecord"
    output_compression: str = "none"
    max_features_per_topic: int = Field(2, ge=1)
    label_feature: str | None = None
    include_preview: bool = True
    preview_rows: int = Field(5, ge=1)

    @field_validator("selected_topics", "join_topics")
    @classmethod
    def _dedupe(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(t.strip() for t in v if t.strip()))


@dataclass
class DraftResult:
    request: dict[str, Any]
    spec: ConversionSpec
    selected_topics: list[str]
    trigger_topic: str
    join_topics: list[str]
    warnings: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    unresolved_fields: list[str] = field(default_factory=list)
    preview: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "spec": self.spec.model_dump(mode="json", by_alias=True),
            "selected_topics": self.selected_topics,
            "trigger_topic": self.trigger_topic,
            "join_topics": self.join_topics,
            "warnings": self.warnings,
            "assumptions": self.assumptions,
            "unresolved_fields": self.unresolved_fields,
            "preview": self.preview,
        }


def _name(topic: str, path: str) -> str:
    base = re.sub(r"[^0-9A-Za-z]+", "_", f"{topic}__{path}" if path else topic).strip("_")
    return base.lower() or "feature"


def _rank(c: dict[str, Any]) -> float | None:
    """Lower is better; None = not a useful feature."""
    path, kind, leaf = c["path"], c["kind"], c["path"].split(".")[-1]
    if path.startswith("header") or leaf in _SKIP_LEAVES or leaf.startswith("__"):
        return None
    if c.get("image_like") and kind in ("image", "bytes"):
        return 0
    if leaf == "buttons":
        return 1
    if leaf == "axes":
        return 2
    if kind == "bytes":
        return 3
    numeric = c["candidate_dtypes"] and c["candidate_dtypes"][0] in ("int64", "float32", "float64", "bool")
    if "covariance" in path:
        return 8 if numeric else None
    if kind == "struct" and c.get("numeric_leaves"):
        return 4 + path.count(".") * 0.1
    if kind == "sequence" and numeric:
        return 5
    if kind == "scalar" and numeric and leaf not in ("height", "width"):
        return 6 + path.count(".") * 0.1
    return None


def _feature(topic: str, c: dict[str, Any]) -> FeatureSpec:
    kind, leaf, dtypes = c["kind"], c["path"].split(".")[-1], c["candidate_dtypes"]
    source = {"kind": "path", "topic": topic, "field_path": c["path"]}
    if kind in ("image", "bytes"):
        return FeatureSpec(source=source, dtype="bytes", description=f"{topic} {c['path']}")
    dtype = (
        "int64"
        if leaf == "buttons"
        else "float32"
        if leaf == "axes"
        else ("int64" if dtypes[0] in ("int64", "bool") else "float32")
    )
    if kind == "struct":
        parts = [{"kind": "path", "topic": topic, "field_path": f"{c['path']}.{k}"} for k in c["numeric_leaves"]]
        source = {"kind": "concat", "sources": parts, "axis": 0}
    transforms = [TransformSpec(kind="cast", params={"dtype": dtype})]
    shape = c.get("shape_hint")
    if kind == "sequence" and shape and not c.get("variable_length"):
        transforms.append(TransformSpec(kind="length", params={"exact": shape[0]}))
    return FeatureSpec(
        source=source,
        dtype=dtype,
        shape=None if c.get("variable_length") else shape,
        missing="zeros",
        transforms=transforms,
        description=f"{topic} {c['path']}",
    )


def build_draft(
    inspection: Any, request: DraftRequest | dict[str, Any] | None = None, path: str | None = None
) -> DraftResult:
    """Raise ValueError for an unusable request (message safe to show)."""
    req = request if isinstance(request, DraftRequest) else DraftRequest(**(request or {}))
    insp = inspection.to_dict() if hasattr(inspection, "to_dict") else dict(inspection)
    topics: dict[str, Any] = insp.get("topics") or {}
    if not topics:
        raise ValueError("inspection result does not contain any topics to draft")
    for t in [req.trigger_topic, *req.selected_topics, *req.join_topics]:
        if t and t not in topics:
            raise ValueError(f"{'trigger ' if t == req.trigger_topic else ''}topic not found in inspection result: {t}")
    selected = req.selected_topics or list(topics)
    warnings: list[str] = []
    assumptions = [
        "rows are produced at the trigger topic's message times (log time)",
        "joined topics use the last sample at or before each row (not required)",
    ]
    usable = [t for t in selected if topics[t]["sampled_message_count"] > 0]
    warnings += [f"topic {t} had no decodable samples" for t in selected if t not in usable]
    if not usable:
        raise ValueError("inspection result does not contain any topics to draft")

    def image_score(t: str) -> tuple[int, int, int]:
        cands = topics[t]["field_candidates"].values()
        return (sum(1 for c in cands if c["image_like"]), len(cands), topics[t]["sampled_message_count"])

    trigger = req.trigger_topic or max(usable, key=lambda t: (image_score(t), -usable.index(t)))
    if req.trigger_topic is None:
        assumptions.append(f"trigger topic {trigger} chosen as the most image-like selected topic")
    joins = [t for t in (req.join_topics or usable) if t != trigger]
    features: dict[str, FeatureSpec] = {}
    unresolved: list[str] = []
    for topic in [trigger, *joins]:
        ranked = sorted(
            ((r, c["path"], c) for c in topics[topic]["field_candidates"].values() if (r := _rank(c)) is not None),
            key=lambda x: (x[0], x[1]),
        )
        if not ranked:
            unresolved.append(topic)
            features[_name(topic, "")] = FeatureSpec(
                source={"kind": "path", "topic": topic, "field_path": ""},
                dtype="json",
                description=f"{topic} whole message",
            )
            warnings.append(f"no typed field found on {topic}; drafted the whole message as json")
            continue
        for _r, p, c in ranked[: req.max_features_per_topic]:
            features[_name(topic, p)] = _feature(topic, c)
    labels = None
    if req.label_feature:
        if req.label_feature not in features:
            raise ValueError(f"label feature is not among the drafted features: {req.label_feature}")
        labels = LabelsSpec(primary=req.label_feature)
    spec = ConversionSpec(
        schema=SchemaSpec(name=req.schema_name, version=req.schema_version),
        input={"paths": [insp["bag_path"]] if insp.get("bag_path") else [], "include_topics": [trigger, *joins]},
        decoding=DecodingSpec(
            topics={t: TopicDecoding(type_hint=topics[t]["message_type"]) for t in [trigger, *joins]}
        ),
        row_strategy=TriggerStrategy(
            trigger_topic=trigger,
            joins=[JoinSpec(topic=t, sync_policy="last-known-before", required=False) for t in joins],
        ),
        features=features,
        labels=labels,
        validation=ValidationSpec(sample_n=32, expected_features=list(features)),
        draft_origin=DraftOrigin(
            kind="inspection",
            source_topics=[trigger, *joins],
            assumptions=assumptions,
            warnings=warnings,
            provenance={
                "bag_path": insp.get("bag_path"),
                "ros_version": insp.get("ros_version"),
                "sample_n": insp.get("sample_n"),
                "generator": "kiln.robotics.draft",
            },
        ),
        output=OutputSpec(format=req.output_format, compression=req.output_compression),
    )
    preview = None
    target = path or insp.get("bag_path")
    if req.include_preview and target:
        from kiln.apps.robotics.conversion.preview import preview as run_preview

        try:
            preview = run_preview(target, spec, req.preview_rows).to_dict()
        except Exception as exc:  # a failed preview must not lose the draft
            warnings.append(f"preview failed: {exc}")
    return DraftResult(
        req.model_dump(), spec, [trigger, *joins], trigger, joins, warnings, assumptions, unresolved, preview
    )
