"""Loading spec documents: payload normalisation, version 1 -> 2 migration, legacy mapping.

`load_spec_document(doc) -> (SpecDocument, notes)` accepts a SpecDocument, a dict, a JSON
or YAML string or a file path, with or without the `{spec_version, spec, metadata}`
envelope; `notes` explain every change made on the way (empty when none).
`build_legacy_spec(...)`, `auto_mapping(topics)` and `representation_policy(output)` serve
the legacy conversion mode and the HTTP payloads.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kiln.apps.robotics.spec.models import (
    SPEC_VERSION,
    ConversionSpec,
    DraftOrigin,
    LegacyResample,
    OutputSpec,
    SchemaSpec,
    SpecDocument,
)


class SpecError(ValueError):
    """A spec document that cannot be loaded; the message is safe to return to a client.

    `errors` (when validation failed) is FastAPI's list shape: `[{loc, msg, type}]`."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.errors = errors


def _infer_kind(block: dict[str, Any], rules: list[tuple[str, str]]) -> bool:
    if "kind" in block:
        return False
    for key, kind in rules:
        if key in block:
            block["kind"] = kind
            return True
    return False


_ROW_RULES = [
    ("trigger_topic", "trigger"),
    ("joins", "trigger"),
    ("freq_hz", "resample"),
    ("method", "resample"),
    ("topic", "per-message"),
]
_SOURCE_RULES = [("field_path", "path"), ("topic", "path"), ("value", "constant"), ("key", "metadata")]


def _normalize_source(src: Any, notes: set[str]) -> None:
    if not isinstance(src, dict):
        return
    if _infer_kind(src, _SOURCE_RULES):
        notes.add("inferred missing feature source kinds")
    for inner in src.get("sources", []) or []:
        _normalize_source(inner, notes)


def normalize_spec_payload(spec: dict[str, Any]) -> list[str]:
    """Rewrite old spellings in place; returns what changed."""
    notes: set[str] = set()
    if "schema_spec" in spec and "schema" not in spec:
        spec["schema"] = spec.pop("schema_spec")
        notes.add("renamed schema_spec to schema")
    if "schema_name" in spec or "schema_version" in spec:
        schema = dict(spec.get("schema") or {})
        if "schema_name" in spec:
            schema["name"] = spec.pop("schema_name")
        if "schema_version" in spec:
            schema["version"] = spec.pop("schema_version")
        spec["schema"] = schema
        notes.add("moved schema_name/schema_version into schema")
    if isinstance(spec.get("assembly"), dict):
        if _infer_kind(spec["assembly"], [("trigger_topic", "trigger")]):
            notes.add("inferred assembly kind")
        if spec.get("row_strategy") is None:
            spec["row_strategy"] = copy.deepcopy(spec["assembly"])
            notes.add("moved assembly to row_strategy")
    if isinstance(spec.get("row_strategy"), dict) and _infer_kind(spec["row_strategy"], _ROW_RULES):
        notes.add("inferred row_strategy kind")
    for feature in (spec.get("features") or {}).values():
        if isinstance(feature, dict):
            _normalize_source(feature.get("source"), notes)
    if isinstance(spec.get("labels"), dict):
        _normalize_source(spec["labels"].get("source"), notes)
    return sorted(notes)


def _coerce_payload(doc: Any) -> dict[str, Any]:
    if isinstance(doc, SpecDocument):
        return doc.to_dict()
    if isinstance(doc, ConversionSpec):
        return {"spec_version": SPEC_VERSION, "spec": doc.model_dump(mode="json", by_alias=True)}
    if isinstance(doc, Path) or (
        isinstance(doc, str)
        and "\n" not in doc
        and doc.strip().endswith((".json", ".yaml", ".yml"))
        and Path(doc).exists()
    ):
        doc = Path(doc).read_text()
    if isinstance(doc, bytes | str):
        text = doc.decode() if isinstance(doc, bytes) else doc
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            import yaml

            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise SpecError(f"spec document is neither JSON nor YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise SpecError("spec document must be an object")
    return copy.deepcopy(doc)


def load_spec_document(doc: Any) -> tuple[SpecDocument, list[str]]:
    """Parse, normalise and migrate a spec document to the current version."""
    payload = _coerce_payload(doc)
    if "spec" not in payload or not isinstance(payload.get("spec"), dict):
        if "spec_version" in payload or "metadata" in payload:
            raise SpecError("spec document has no spec object")
        payload = {"spec_version": SPEC_VERSION, "spec": payload, "metadata": {}}
    version = payload.get("spec_version", SPEC_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SpecError(f"invalid spec_version: {version!r}")
    if version > SPEC_VERSION:
        raise SpecError(f"unsupported spec document version {version} (newest supported: {SPEC_VERSION})")
    spec = payload["spec"]
    notes = [f"normalized spec: {n}" for n in normalize_spec_payload(spec)]
    if version < 2:
        output = spec.setdefault("output", {}) if isinstance(spec.get("output", {}), dict) else {}
        if output.get("format", "tfrecord") == "tfrecord" and "image_payload_contract" not in output:
            # version 1 wrote images as int lists; keep old configs producing the same records
            output["image_payload_contract"] = "legacy_list_v1"
            notes.insert(0, "pinned output.image_payload_contract to legacy_list_v1 to keep version 1 output")
        notes.insert(0, f"migrated spec document from version {version} to {SPEC_VERSION}")
        payload["spec_version"] = SPEC_VERSION
    try:
        return SpecDocument.model_validate(payload), notes
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), validation_details(exc, ("body",))) from None


def _loc(err: Any) -> list[str | int]:
    # discriminated unions add the member's class name to the path: not a field a client wrote
    return [p for p in err["loc"] if not re.fullmatch(r"[A-Z]\w+Strategy|[A-Z]\w+Source", str(p))]


def _msg(err: Any) -> str:
    return err["msg"].removeprefix("Value error, ")


def validation_details(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """FastAPI's `detail` list (`loc`, `msg`, `type`) without inputs, contexts or doc links."""
    return [{"loc": [*prefix, *_loc(err)], "msg": _msg(err), "type": err["type"]} for err in exc.errors()[:20]]


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in _loc(err))
        msg = _msg(err)
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 5
    return "invalid spec: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def load_spec(spec: Any) -> ConversionSpec:
    """A bare spec or an envelope -> ConversionSpec (migration notes dropped)."""
    return load_spec_document(spec)[0].spec


def dump_spec_document(doc: SpecDocument) -> str:
    return json.dumps(doc.to_dict(), indent=2, sort_keys=True)


def auto_field_name(topic: str) -> str:
    """`/camera/front/image_raw` -> `camera_front_image_raw`."""
    name = re.sub(r"[^0-9A-Za-z_]+", "_", topic).strip("_")
    return name or "topic"


def auto_mapping(topics: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in topics:
        name, n = auto_field_name(t), 2
        base = name
        while name in out:
            name, n = f"{base}_{n}", n + 1
        out[name] = [t]
    return out


def build_legacy_spec(
    mapping: dict[str, list[str]],
    *,
    output: dict[str, Any] | OutputSpec | None = None,
    resample: dict[str, Any] | LegacyResample | None = None,
    write_manifest: bool = True,
) -> ConversionSpec:
    """The spec a legacy mapping request runs as (schema `legacy_mapping` v1)."""
    try:
        out = output if isinstance(output, OutputSpec) else OutputSpec.model_validate(output or {"format": "parquet"})
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), validation_details(exc, ("body", "output"))) from None
    out = out.model_copy(update={"write_manifest": write_manifest})
    try:
        rs = (
            resample
            if isinstance(resample, LegacyResample) or resample is None
            else LegacyResample.model_validate(resample)
        )
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), validation_details(exc, ("body", "resample"))) from None
    topics = sorted({t for ts in mapping.values() for t in ts})
    try:
        return ConversionSpec(
            schema=SchemaSpec(name="legacy_mapping", version=1),
            input={"include_topics": topics},
            mapping=mapping,
            resample=rs,
            output=out,
            write_manifest=write_manifest,
            draft_origin=DraftOrigin(kind="legacy", source_topics=topics),
        )
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc), validation_details(exc, ("body",))) from None


def representation_policy(output: OutputSpec, requested_contract: str | None = None) -> dict[str, Any]:
    """How payloads are represented in the output files (HTTP payloads and manifests)."""
    if output.format == "parquet":
        return {
            "policy_version": 1,
            "output_format": "parquet",
            "requested_image_payload_contract": None,
            "image_payload_contract": None,
            "payload_encoding": None,
            "null_encoding": None,
            "compatibility_markers": [],
            "warnings": [],
        }
    legacy = output.image_payload_contract == "legacy_list_v1"
    return {
        "policy_version": 1,
        "output_format": "tfrecord",
        "requested_image_payload_contract": requested_contract,
        "image_payload_contract": output.image_payload_contract,
        "payload_encoding": output.payload_encoding,
        "null_encoding": output.null_encoding,
        "compatibility_markers": ["legacy_list_image_payload"] if legacy else [],
        "warnings": ["legacy image payload contract is enabled; image data will remain list-based"] if legacy else [],
    }
