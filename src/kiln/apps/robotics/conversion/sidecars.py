"""Manifest (`<stem>.manifest.json`) and report (`<stem>.report.md`) beside each dataset file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kiln import __version__ as kiln_version
from kiln.apps.robotics.spec.migrate import representation_policy
from kiln.apps.robotics.spec.models import ConversionSpec

MANIFEST_VERSION = 1


def sidecar_paths(dataset: Path) -> tuple[Path, Path]:
    stem = dataset.name.split(".")[0]
    return dataset.with_name(f"{stem}.manifest.json"), dataset.with_name(f"{stem}.report.md")


def _rates(counts: dict[str, int], rows: int) -> dict[str, float]:
    return {k: (round(v / rows, 6) if rows else 0.0) for k, v in counts.items()}


def build_manifest(
    *,
    dataset: Path,
    spec: ConversionSpec,
    episode_id: str,
    source: dict[str, Any],
    rows_written: int,
    split_name: str,
    shard_index: int,
    num_shards: int,
    stats: dict[str, Any],
    mapping_resolved: dict[str, str] | None,
) -> dict[str, Any]:
    meta = source.get("metadata") or {}
    out = spec.output
    conversion: dict[str, Any] = {
        "output": out.model_dump(mode="json"),
        "row_strategy": spec.row_strategy.model_dump(mode="json") if spec.row_strategy else None,
        "resample": spec.resample.model_dump(mode="json") if spec.resample else None,
        "mapping_requested": spec.mapping,
        "mapping_resolved": mapping_resolved,
        "schema": spec.schema_spec.model_dump(mode="json"),
        "features": {k: v.model_dump(mode="json") for k, v in spec.features.items()},
        "labels": spec.labels.model_dump(mode="json") if spec.labels else None,
        "draft_origin": spec.draft_origin.model_dump(mode="json") if spec.draft_origin else None,
        "split": spec.split.model_dump(mode="json"),
        "validation": spec.validation.model_dump(mode="json"),
        "preflight": {"bad_records": stats.get("bad_records", 0), "preflight_ok": stats.get("bad_records", 0) == 0},
        "rows_written": rows_written,
        "dropped_rows": stats.get("dropped_rows", 0),
        "split_counts": stats.get("split_counts", {}),
        "missing_feature_counts": stats.get("missing_feature_counts", {}),
        "missing_feature_rates": _rates(stats.get("missing_feature_counts", {}), rows_written),
        "missing_topic_counts": stats.get("missing_topic_counts", {}),
        "missing_topic_rates": _rates(stats.get("missing_topic_counts", {}), rows_written),
        "decode_failures": stats.get("decode_failures", 0),
    }
    if out.format == "tfrecord":
        conversion["payload_representation"] = representation_policy(out)
    return {
        "manifest_version": MANIFEST_VERSION,
        "kiln_version": kiln_version,
        "episode_id": episode_id,
        "dataset": {
            "path": str(dataset),
            "format": out.format,
            "file_size_bytes": dataset.stat().st_size,
            "rows_written": rows_written,
            "field_names": ["timestamp_ns", *spec.features],
            "split_name": split_name,
            "shard_index": shard_index,
            "num_shards": num_shards,
            "output_filename": dataset.name,
        },
        "source": {
            "path": source["path"],
            "file_path": source["path"],
            "ros_version": source.get("ros_version"),
            "storage_format": source.get("storage_format"),
            "file_size_bytes": source.get("file_size_bytes"),
            "source_metadata": meta.get("raw_metadata", {}),
        },
        "temporal": {
            "start_timestamp": stats.get("first_ns"),
            "end_timestamp": stats.get("last_ns"),
            "start_time_iso": meta.get("start_time"),
            "end_time_iso": meta.get("end_time"),
            "duration_seconds": meta.get("duration"),
            "message_count": meta.get("message_count"),
        },
        "conversion": conversion,
        "robot_context": None,
        "labels": {"auto_tags": None, "vlm_description": None, "objects_detected": None},
        "privacy": {"is_anonymized": False, "anonymization_method": None},
    }


def _block(title: str, data: Any) -> str:
    return f"## {title}\n\n```json\n{json.dumps(data, indent=2, sort_keys=True, default=str)}\n```\n"


def build_report(manifest: dict[str, Any], preview_rows: list[dict[str, Any]] | None = None) -> str:
    ds, conv = manifest["dataset"], manifest["conversion"]
    rs = conv.get("row_strategy") or {}
    lines = [
        f"# Conversion report: {ds['output_filename']}",
        "",
        f"- episode: {manifest['episode_id']}",
        f"- schema: {conv['schema']['name']} v{conv['schema']['version']}",
        f"- source: {manifest['source']['path']}",
        f"- format: {ds['format']} ({conv['output']['compression']})",
        f"- rows written: {ds['rows_written']}",
        f"- file size: {ds['file_size_bytes']} bytes",
        f"- row strategy: {rs.get('kind', 'legacy mapping')}",
        f"- split / shard: {ds['split_name']} / {ds['shard_index'] + 1} of {ds['num_shards']}",
        f"- dropped rows: {conv['dropped_rows']}",
    ]
    if "payload_representation" in conv:
        lines.append(f"- image payload contract: {conv['payload_representation']['image_payload_contract']}")
    parts = [
        "\n".join(lines) + "\n",
        _block("Source", manifest["source"]),
        _block("Temporal", manifest["temporal"]),
        _block("Output config", conv["output"]),
        _block("Features", conv["features"]),
        _block("Preflight", conv["preflight"]),
    ]
    if conv.get("mapping_requested"):
        parts.append(_block("Mappings", {"requested": conv["mapping_requested"], "resolved": conv["mapping_resolved"]}))
    parts.append(
        _block("Missing counts", {"features": conv["missing_feature_counts"], "topics": conv["missing_topic_counts"]})
    )
    parts.append(_block("Robot context", manifest["robot_context"]))
    if preview_rows:
        parts.append(_block("Preview rows", preview_rows))
    return "\n".join(parts)


def write_sidecars(
    dataset: Path, manifest: dict[str, Any], preview_rows: list[dict[str, Any]] | None = None
) -> tuple[Path, Path]:
    mpath, rpath = sidecar_paths(dataset)
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    rpath.write_text(build_report(manifest, preview_rows))
    return mpath, rpath
