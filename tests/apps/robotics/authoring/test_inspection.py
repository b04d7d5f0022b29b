"""Inspection samples and the drafts built from them."""

from __future__ import annotations

import json

import pytest

from kiln.apps.robotics.authoring.inspection import inspect_recording
from kiln.apps.robotics.reading.reader import RecordingError
from kiln.apps.robotics.spec import build_draft, load_spec_document
from tests.apps.robotics import bagfactory as bf


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return bf.write_recording(tmp_path_factory.mktemp("insp") / "r.mcap", "mcap-lz4")


def test_samples_are_bounded_json_safe_and_free_of_dunders(recording):
    result = inspect_recording(recording, sample_n=3, max_depth=2, max_sequence_items=2).to_dict()
    text = json.dumps(result)  # must be JSON-safe
    assert "__msgtype__" not in text
    imu = result["topics"]["/imu"]
    assert imu["message_type"] == bf.IMU and imu["sampled_message_count"] == 3
    assert imu["sample_timestamps"] == sorted(imu["sample_timestamps"])
    payload = imu["sample_payloads"][1]["payload"]
    assert payload["linear_acceleration"] == {"x": bf.imu_value(1), "y": 1.0, "z": 9.81}
    assert payload["header"]["stamp"] == {"__truncated__": True, "type": "builtin_interfaces/msg/Time"}
    assert len(payload["orientation_covariance"]) == 2  # max_sequence_items
    status = result["topics"]["/status"]
    assert status["sampled_message_count"] == 2  # only two exist
    assert status["sample_payloads"][0]["payload"] == {"data": "status 0"}


def test_field_candidates(recording):
    result = inspect_recording(recording, topics=["/camera/image_raw", "/imu"], sample_n=4).to_dict()
    assert set(result["topics"]) == {"/camera/image_raw", "/imu"}
    data = result["topics"]["/camera/image_raw"]["field_candidates"]["data"]
    assert data["kind"] == "image" and data["image_like"] and data["candidate_dtypes"] == ["bytes"]
    assert data["shape_hint"] == [8 * 6 * 3]
    acc = result["topics"]["/imu"]["field_candidates"]["linear_acceleration.x"]
    assert acc["kind"] == "scalar" and acc["candidate_dtypes"][0] == "float32"
    assert [e for e in acc["examples"]] == [bf.imu_value(i) for i in range(3)]
    vec = result["topics"]["/imu"]["field_candidates"]["linear_acceleration"]
    assert vec["numeric_leaves"] == ["x", "y", "z"]


def test_unknown_topic_is_an_error(recording):
    with pytest.raises(RecordingError, match="topics not found"):
        inspect_recording(recording, topics=["/nope"])


def test_draft_picks_image_trigger_useful_fields_and_previews(recording):
    insp = inspect_recording(recording, sample_n=4)
    draft = build_draft(insp, {"output_format": "parquet", "max_features_per_topic": 2})
    out = draft.to_dict()
    assert out["trigger_topic"] == "/camera/image_raw"
    assert set(out["join_topics"]) == {"/imu", "/odom", "/lidar/points", "/status"}
    feats = out["spec"]["features"]
    assert feats["camera_image_raw_data"]["dtype"] == "bytes"
    assert all("header" not in f["description"] for f in feats.values())
    assert out["unresolved_fields"] == ["/status"]
    # the draft is a valid document
    doc, notes = load_spec_document({"spec_version": 2, "spec": out["spec"]})
    assert notes == [] and doc.spec.row_strategy.kind == "trigger"
    preview = out["preview"]
    assert preview["bad_records"] == 0 and len(preview["rows"]) == 5
    row = preview["rows"][1]
    assert row["field_data"]["imu_linear_acceleration"] == [pytest.approx(bf.imu_value(9)), 1.0, pytest.approx(9.81)]
    assert row["presence_data"]["camera_image_raw_data"] == 1


def test_draft_errors(recording):
    insp = inspect_recording(recording, topics=["/imu"], sample_n=2)
    with pytest.raises(ValueError, match="trigger topic not found in inspection result: /cam"):
        build_draft(insp, {"trigger_topic": "/cam"})
    with pytest.raises(ValueError, match="does not contain any topics"):
        build_draft({"topics": {}}, {})
    draft = build_draft(insp, {"include_preview": False, "label_feature": "imu_angular_velocity"})
    assert draft.preview is None and draft.spec.labels.primary == "imu_angular_velocity"
