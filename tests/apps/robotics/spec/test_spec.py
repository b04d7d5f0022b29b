"""Spec documents: strict models, normalisation, v1 -> v2 migration, capabilities, legacy specs."""

from __future__ import annotations

import json

import pytest

from kiln.apps.robotics.spec import (
    SPEC_VERSION,
    SpecError,
    auto_mapping,
    build_legacy_spec,
    capabilities,
    dump_spec_document,
    load_spec_document,
    representation_policy,
)

TRIGGER = {
    "row_strategy": {"kind": "trigger", "trigger_topic": "/cam", "joins": [{"topic": "/imu"}]},
    "features": {
        "acc": {"source": {"kind": "path", "topic": "/imu", "field_path": "linear_acceleration.x"}, "dtype": "float32"}
    },
}


def test_bare_spec_is_wrapped_and_round_trips():
    doc, notes = load_spec_document(TRIGGER)
    assert notes == []
    assert doc.spec_version == SPEC_VERSION
    assert doc.spec.assembly is not None and doc.spec.assembly.trigger_topic == "/cam"
    again, notes2 = load_spec_document(dump_spec_document(doc))
    assert notes2 == [] and again == doc
    assert json.loads(dump_spec_document(doc))["spec"]["schema"]["name"] == "generic_conversion"


def test_unknown_keys_are_refused_with_a_readable_message():
    with pytest.raises(SpecError, match=r"spec\.bogus: Extra inputs are not permitted"):
        load_spec_document({**TRIGGER, "bogus": 1})
    bad = json.loads(json.dumps(TRIGGER))
    bad["features"]["acc"]["source"]["extra"] = True
    with pytest.raises(SpecError, match="Extra inputs"):
        load_spec_document(bad)


def test_v1_document_migrates_with_notes_and_pins_legacy_image_contract():
    v1 = {
        "spec_version": 1,
        "spec": {
            "schema_name": "old",
            "schema_version": 3,
            "assembly": {"trigger_topic": "/cam", "joins": [{"topic": "/imu"}]},
            "features": {"acc": {"source": {"topic": "/imu", "field_path": "linear_acceleration.x"}}},
        },
    }
    doc, notes = load_spec_document(v1)
    assert notes[0] == "migrated spec document from version 1 to 2"
    assert any("legacy_list_v1" in n for n in notes)
    assert doc.spec_version == 2
    assert doc.spec.output.image_payload_contract == "legacy_list_v1"
    assert doc.spec.schema_spec.name == "old" and doc.spec.schema_spec.version == 3
    assert doc.spec.row_strategy.kind == "trigger"
    assert doc.spec.features["acc"].source.kind == "path"
    # parquet v1 documents keep the default contract
    doc2, _ = load_spec_document({"spec_version": 1, "spec": {**TRIGGER, "output": {"format": "parquet"}}})
    assert doc2.spec.output.image_payload_contract == "bytes_v2"


def test_version_and_output_validation():
    with pytest.raises(SpecError, match="unsupported spec document version 3"):
        load_spec_document({"spec_version": 3, "spec": TRIGGER})
    with pytest.raises(SpecError, match="invalid tfrecord compression: snappy"):
        load_spec_document({**TRIGGER, "output": {"format": "tfrecord", "compression": "snappy"}})
    with pytest.raises(SpecError, match="can only be customized for tfrecord"):
        load_spec_document({**TRIGGER, "output": {"format": "parquet", "image_payload_contract": "legacy_list_v1"}})
    with pytest.raises(SpecError, match="split fractions must sum to 1"):
        load_spec_document(
            {
                **TRIGGER,
                "split": {"strategy": "random", "train_fraction": 0.5, "val_fraction": 0.1, "test_fraction": 0.1},
            }
        )
    with pytest.raises(SpecError, match="expected_features not defined"):
        load_spec_document({**TRIGGER, "validation": {"expected_features": ["nope"]}})
    with pytest.raises(SpecError, match="anchor_topic"):
        load_spec_document(
            {
                "row_strategy": {"kind": "resample", "freq_hz": 5, "topics": ["/a"], "anchor_topic": "/b"},
                "features": TRIGGER["features"],
            }
        )
    with pytest.raises(SpecError, match="neither JSON nor YAML"):
        load_spec_document("{: not [ valid")


def test_yaml_and_transform_shorthands():
    text = """
row_strategy: {kind: per-message, topic: /imu}
features:
  acc:
    source: {kind: path, topic: /imu, field_path: linear_acceleration}
    dtype: float32
    transforms: [cast, {clamp: {min: 0, max: 1}}]
"""
    doc, _ = load_spec_document(text)
    kinds = [(t.kind, t.params) for t in doc.spec.features["acc"].transforms]
    assert kinds == [("cast", {}), ("clamp", {"min": 0, "max": 1})]


def test_legacy_spec_and_auto_mapping():
    mapping = auto_mapping(["/camera/front/image_raw", "/imu", "imu"])
    assert mapping == {"camera_front_image_raw": ["/camera/front/image_raw"], "imu": ["/imu"], "imu_2": ["imu"]}
    spec = build_legacy_spec(mapping, resample={"freq_hz": 5, "method": "downsample"})
    assert spec.schema_spec.name == "legacy_mapping" and spec.output.format == "parquet"
    assert spec.input.include_topics == sorted(["/camera/front/image_raw", "/imu", "imu"])
    with pytest.raises(SpecError):
        build_legacy_spec({"a": []})


def test_representation_policy_and_capabilities():
    legacy_out = {"format": "tfrecord", "image_payload_contract": "legacy_list_v1"}
    doc, _ = load_spec_document({**TRIGGER, "output": legacy_out})
    pol = representation_policy(doc.spec.output, "legacy_list_v1")
    assert pol["compatibility_markers"] == ["legacy_list_image_payload"] and pol["warnings"]
    assert representation_policy(load_spec_document(TRIGGER)[0].spec.output)["image_payload_contract"] == "bytes_v2"
    caps = capabilities()
    assert caps["hephaes"]["spec_version"] == 2
    assert caps["hephaes"]["row_strategies"] == ["trigger", "per-message", "resample"]
    assert len(caps["hephaes"]["transform_kinds"]) == 11
    assert caps["output_contract"]["supported_image_payload_contracts"] == ["bytes_v2", "legacy_list_v1"]
    assert caps["persistence"]["spec_document_version"] == 2
