"""Conversion spec document, version 2: pydantic models that refuse unknown keys.

`SpecDocument {spec_version, spec: ConversionSpec, metadata}`. A spec either has a
`row_strategy` and `features` (schema-aware path) or a legacy `mapping` (one column per
target, first present topic wins). Load documents through `spec.migrate.load_spec_document`,
which normalises old payload shapes and upgrades version 1 first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SPEC_VERSION = 2

SyncPolicy = Literal["nearest", "last-known-before", "exact-within-tolerance"]
MissingPolicy = Literal["default", "zeros", "forward_fill", "drop", "error"]
DecodeFailure = Literal["skip", "warn", "fail"]
Dtype = Literal["bytes", "int64", "float32", "float64", "bool", "json"]
TransformKind = Literal[
    "cast",
    "clamp",
    "length",
    "multi_hot",
    "normalize",
    "one_hot",
    "scale",
    "image_color_convert",
    "image_crop",
    "image_encode",
    "image_resize",
]
PARQUET_COMPRESSIONS = ("none", "snappy", "gzip", "brotli", "lz4", "zstd")
TFRECORD_COMPRESSIONS = ("none", "gzip")
IMAGE_CONTRACTS = ("bytes_v2", "legacy_list_v1")


MAX_SHARDS = 256
TEMPLATE_FIELDS = ("episode_id", "split", "shard", "shard_index", "num_shards", "extension")


def check_filename_template(template: str) -> None:
    """A template is a file *name* pattern: no folders, no `..`, no NUL, at most 255 bytes."""
    if "/" in template or "\\" in template or "\x00" in template or ".." in template:
        raise ValueError("filename_template must be a file name: no path separators, '..' or NUL characters")
    if not template.strip():
        raise ValueError("filename_template must not be blank")
    sample = {
        "episode_id": "episode_0001",
        "split": "train",
        "shard": 0,
        "shard_index": 0,
        "num_shards": MAX_SHARDS,
        "extension": "tfrecord",
    }
    try:
        name = template.format(**sample)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"filename_template has an unknown or malformed placeholder ({exc}); use {{{'}, {'.join(TEMPLATE_FIELDS)}}}"
        ) from None
    if len(template.encode()) > 255 or len(name.encode()) + len(".manifest.json") > 255:
        raise ValueError("filename_template makes names longer than 255 bytes")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError("filename_template must be a file name")


class Strict(BaseModel):
    """Unknown keys are refused; `null` for a field that has a default means that default
    (hephaes' own JSON writes `"split": null`, `"field_path": null`, ...)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(v is None for v in data.values()):
            optional = {n for name, f in cls.model_fields.items() if not f.is_required() for n in (name, f.alias) if n}
            data = {k: v for k, v in data.items() if v is not None or k not in optional}
        return data


class SchemaSpec(Strict):
    name: str = "generic_conversion"
    version: int = Field(1, ge=1)


class InputSpec(Strict):
    paths: list[str] = Field(default_factory=list)
    recursive: bool = False
    include_topics: list[str] = Field(default_factory=list)
    exclude_topics: list[str] = Field(default_factory=list)
    start_ns: int | None = None  # applied by the converter (the reference ignored the window)
    end_ns: int | None = None
    max_messages: int | None = Field(None, ge=1)
    sample_rate_hz: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _window(self) -> InputSpec:
        if self.start_ns is not None and self.end_ns is not None and self.end_ns < self.start_ns:
            raise ValueError("input.end_ns must be >= input.start_ns")
        return self


class TopicDecoding(Strict):
    type_hint: str | None = None
    on_failure: DecodeFailure | None = None


class DecodingSpec(Strict):
    topics: dict[str, TopicDecoding] = Field(default_factory=dict)
    on_decode_failure: DecodeFailure = "warn"


class JoinSpec(Strict):
    topic: str
    sync_policy: SyncPolicy = "last-known-before"
    tolerance_ns: int | None = Field(None, ge=0)
    staleness_ns: int | None = Field(None, ge=0)
    required: bool = True
    missing: MissingPolicy = "default"
    default_value: Any = None


class TriggerStrategy(Strict):
    kind: Literal["trigger"] = "trigger"
    trigger_topic: str
    joins: list[JoinSpec] = Field(default_factory=list)


class PerMessageStrategy(Strict):
    kind: Literal["per-message"] = "per-message"
    topic: str


class ResampleStrategy(Strict):
    kind: Literal["resample"] = "resample"
    freq_hz: float = Field(gt=0)
    method: Literal["interpolate", "downsample"] = "downsample"
    topics: list[str] = Field(min_length=1)
    anchor_topic: str | None = None

    @model_validator(mode="after")
    def _anchor(self) -> ResampleStrategy:
        if self.anchor_topic is not None and self.anchor_topic not in self.topics:
            raise ValueError("row_strategy.anchor_topic must be one of row_strategy.topics")
        return self


RowStrategy = Annotated[TriggerStrategy | PerMessageStrategy | ResampleStrategy, Field(discriminator="kind")]


class PathSource(Strict):
    kind: Literal["path"] = "path"
    topic: str
    field_path: str = ""  # dotted; numeric segments index sequences; "" = whole message


class ConstantSource(Strict):
    kind: Literal["constant"] = "constant"
    value: Any = None
    description: str | None = None


class MetadataSource(Strict):
    kind: Literal["metadata"] = "metadata"
    key: Literal["timestamp_ns", "present_topics"]
    default_value: Any = None


class ConcatSource(Strict):
    kind: Literal["concat"] = "concat"
    sources: list[FeatureSource] = Field(min_length=1)
    axis: int = 0


class StackSource(Strict):
    kind: Literal["stack"] = "stack"
    sources: list[FeatureSource] = Field(min_length=1)
    axis: int = 0


FeatureSource = Annotated[
    PathSource | ConstantSource | MetadataSource | ConcatSource | StackSource, Field(discriminator="kind")
]
ConcatSource.model_rebuild()
StackSource.model_rebuild()


class TransformSpec(Strict):
    kind: TransformKind
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # accepted shorthands: "one_hot" or {"one_hot": {"depth": 3}}
        if isinstance(value, str):
            return {"kind": value}
        if isinstance(value, dict) and "kind" not in value and len(value) == 1:
            ((kind, params),) = value.items()
            return {"kind": kind, "params": params or {}}
        return value


class FeatureSpec(Strict):
    source: FeatureSource
    dtype: Dtype = "json"
    shape: list[int] | None = None
    required: bool = False
    missing: MissingPolicy = "default"
    transforms: list[TransformSpec] = Field(default_factory=list)
    description: str | None = None
    presence_flag: bool = True

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(d < -1 for d in v):
            raise ValueError("shape dimensions must be >= -1 (-1 = variable)")
        return v


class LabelsSpec(Strict):
    primary: str | None = None
    source: FeatureSource | None = None
    class_map: dict[str, int] | None = None
    multi_label: bool = False
    transforms: list[TransformSpec] = Field(default_factory=list)


class SplitSpec(Strict):
    strategy: Literal["none", "time", "random"] = "none"
    train_fraction: float | None = Field(None, ge=0, le=1)
    val_fraction: float | None = Field(None, ge=0, le=1)
    test_fraction: float | None = Field(None, ge=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        fr = [self.train_fraction, self.val_fraction, self.test_fraction]
        given = [f for f in fr if f is not None]
        if given and len(given) != 3:
            raise ValueError("split fractions must be given all together or not at all")
        if given and abs(sum(given) - 1.0) > 1e-6:
            raise ValueError("split fractions must sum to 1")
        if self.strategy != "none" and not given:
            self.train_fraction, self.val_fraction, self.test_fraction = 0.8, 0.1, 0.1
        return self


class ValidationSpec(Strict):
    sample_n: int = Field(32, ge=1)
    fail_fast: bool = False
    bad_record_budget: int | None = Field(None, ge=0)  # None = unlimited
    expected_features: list[str] = Field(default_factory=list)
    preview: bool = False


class DraftOrigin(Strict):
    kind: Literal["manual", "inspection", "template", "legacy"] = "manual"
    source_topics: list[str] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)
    assumptions: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class OutputSpec(Strict):
    format: Literal["parquet", "tfrecord"] = "tfrecord"
    compression: str = "none"
    payload_encoding: Literal["typed_features"] = "typed_features"
    null_encoding: Literal["presence_flag"] = "presence_flag"
    image_payload_contract: Literal["bytes_v2", "legacy_list_v1"] = "bytes_v2"
    shards: int = Field(1, ge=1, le=MAX_SHARDS)
    filename_template: str | None = None
    write_manifest: bool = True

    @field_validator("filename_template")
    @classmethod
    def _file_name_only(cls, v: str | None) -> str | None:
        if v is not None:
            check_filename_template(v)
        return v

    @model_validator(mode="after")
    def _per_format(self) -> OutputSpec:
        self.compression = self.compression.lower()
        allowed = PARQUET_COMPRESSIONS if self.format == "parquet" else TFRECORD_COMPRESSIONS
        if self.compression not in allowed:
            raise ValueError(
                f"invalid {self.format} compression: {self.compression} (expected one of: {', '.join(allowed)})"
            )
        if self.format == "parquet" and self.image_payload_contract != "bytes_v2":
            raise ValueError("spec.output.image_payload_contract can only be customized for tfrecord output")
        return self


class LegacyResample(Strict):
    freq_hz: float = Field(gt=0)
    method: Literal["interpolate", "downsample"] = "downsample"


class ConversionSpec(Strict):
    schema_spec: SchemaSpec = Field(default_factory=SchemaSpec, alias="schema")
    input: InputSpec = Field(default_factory=InputSpec)
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    row_strategy: RowStrategy | None = None
    assembly: TriggerStrategy | None = None
    features: dict[str, FeatureSpec] = Field(default_factory=dict)
    labels: LabelsSpec | None = None
    split: SplitSpec = Field(default_factory=SplitSpec)
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    draft_origin: DraftOrigin | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    mapping: dict[str, list[str]] | None = None
    resample: LegacyResample | None = None
    write_manifest: bool = True

    @model_validator(mode="after")
    def _consistency(self) -> ConversionSpec:
        # `assembly` is the old name of a trigger row strategy; keep both in sync
        if self.assembly is not None:
            if self.row_strategy is None:
                self.row_strategy = self.assembly
            elif not isinstance(self.row_strategy, TriggerStrategy):
                raise ValueError("assembly can only be combined with a trigger row_strategy")
            else:
                self.assembly = self.row_strategy
        elif isinstance(self.row_strategy, TriggerStrategy):
            self.assembly = self.row_strategy
        missing = [f for f in self.validation.expected_features if f not in self.features]
        if missing:
            raise ValueError(f"validation.expected_features not defined in features: {', '.join(missing)}")
        if self.labels and self.labels.primary and self.labels.primary not in self.features:
            raise ValueError(f"labels.primary is not a feature: {self.labels.primary}")
        if self.mapping is not None:
            empty = [k for k, v in self.mapping.items() if not v]
            if not self.mapping or empty:
                raise ValueError("mapping must map each target field to at least one topic")
        return self

    @property
    def schema_aware(self) -> bool:
        return self.row_strategy is not None and bool(self.features)

    def topics_needed(self) -> list[str]:
        """Every topic the conversion reads, in a stable order."""
        out: list[str] = []
        rs = self.row_strategy
        if isinstance(rs, TriggerStrategy):
            out += [rs.trigger_topic] + [j.topic for j in rs.joins]
        elif isinstance(rs, PerMessageStrategy):
            out.append(rs.topic)
        elif isinstance(rs, ResampleStrategy):
            out += rs.topics

        def walk(src: Any) -> None:
            if isinstance(src, PathSource):
                out.append(src.topic)
            elif isinstance(src, ConcatSource | StackSource):
                for s in src.sources:
                    walk(s)

        for f in self.features.values():
            walk(f.source)
        if self.labels and self.labels.source:
            walk(self.labels.source)
        for topics in (self.mapping or {}).values():
            out += topics
        return list(dict.fromkeys(out))


class SpecDocument(Strict):
    spec_version: int = Field(SPEC_VERSION, ge=1, le=SPEC_VERSION)
    spec: ConversionSpec
    metadata: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
