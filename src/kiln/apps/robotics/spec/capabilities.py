"""What the conversion engine supports, as the authoring UI's capabilities payload.

`capabilities(persistence_mode="sql") -> dict` with the reference keys:
{authoring_api_version, hephaes: {...engine...}, output_contract, persistence}. The engine
block keeps the key name `hephaes` because the frontend reads it.
"""

from __future__ import annotations

from typing import Any, get_args

from kiln.apps.robotics.spec.models import (
    IMAGE_CONTRACTS,
    PARQUET_COMPRESSIONS,
    SPEC_VERSION,
    TFRECORD_COMPRESSIONS,
    DecodeFailure,
    Dtype,
    MissingPolicy,
    SyncPolicy,
    TransformKind,
)

ROW_STRATEGIES = ["trigger", "per-message", "resample"]
SOURCE_KINDS = ["path", "constant", "metadata", "concat", "stack"]


def capabilities(persistence_mode: str = "sql") -> dict[str, Any]:
    engine = {
        "spec_version": SPEC_VERSION,
        "supports_spec_documents": True,
        "supports_inspection": True,
        "supports_draft_generation": True,
        "supports_preview": True,
        "supports_migration": True,
        "row_strategies": ROW_STRATEGIES,
        "authoring_row_strategies": ROW_STRATEGIES,
        "planned_row_strategies": [],
        "feature_source_kinds": SOURCE_KINDS,
        "authoring_feature_source_kinds": SOURCE_KINDS,
        "planned_feature_source_kinds": [],
        "feature_dtypes": list(get_args(Dtype)),
        "sync_policies": list(get_args(SyncPolicy)),
        "missing_data_policies": list(get_args(MissingPolicy)),
        "decode_failure_policies": list(get_args(DecodeFailure)),
        "resample_strategies": ["interpolate", "downsample"],
        "split_strategies": ["none", "time", "random"],
        "output_formats": ["parquet", "tfrecord"],
        "parquet_compressions": list(PARQUET_COMPRESSIONS),
        "tfrecord_compressions": list(TFRECORD_COMPRESSIONS),
        "tfrecord_payload_encodings": ["typed_features"],
        "tfrecord_null_encodings": ["presence_flag"],
        "transform_kinds": list(get_args(TransformKind)),
        "input_formats": ["bag", "mcap", "db3", "rosbag2_directory"],
        "chunk_compressions": ["none", "bz2", "lz4", "zstd"],
    }
    return {
        "authoring_api_version": 1,
        "hephaes": engine,
        "output_contract": {
            "policy_version": 1,
            "default_image_payload_contract": "bytes_v2",
            "supported_image_payload_contracts": list(IMAGE_CONTRACTS),
            "legacy_compatibility_marker": "legacy_list_image_payload",
        },
        "persistence": {
            "mode": persistence_mode,
            "supports_saved_configs": True,
            "supports_saved_config_revisions": True,
            "supports_draft_revisions": True,
            "supports_preview_snapshots": True,
            "supports_migration_on_load": True,
            "supports_execute_from_saved_config": True,
            "spec_document_version": SPEC_VERSION,
        },
    }
