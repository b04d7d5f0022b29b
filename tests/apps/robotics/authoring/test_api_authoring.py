"""Authoring over HTTP: capabilities, inspect, preview."""

from __future__ import annotations

import json

from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import recording, register, trigger_spec


async def test_capabilities(client):
    caps = (await client.get("/conversions/capabilities")).json()
    assert caps["authoring_api_version"] == 1 and caps["hephaes"]["spec_version"] == 2
    assert caps["hephaes"]["row_strategies"] == ["trigger", "per-message", "resample"]
    assert caps["hephaes"]["tfrecord_compressions"] == ["none", "gzip"]
    assert len(caps["hephaes"]["transform_kinds"]) == 11
    assert caps["output_contract"]["supported_image_payload_contracts"] == ["bytes_v2", "legacy_list_v1"]
    assert caps["persistence"]["spec_document_version"] == 2


async def test_inspect_and_preview(client, tmp_path):
    asset = await register(client, recording(tmp_path, "r.mcap", "mcap"))
    r = await client.post(
        "/conversions/inspect", json={"asset_id": asset["id"], "topics": [" /imu ", "/imu"], "sample_n": 2}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request"]["topics"] == ["/imu"] and body["request"]["sample_n"] == 2
    imu = body["inspection"]["topics"]["/imu"]
    assert imu["sampled_message_count"] == 2 and "linear_acceleration.x" in imu["field_candidates"]
    assert "__msgtype__" not in json.dumps(body)
    assert body["representation_policy"]["image_payload_contract"] == "bytes_v2"
    r = await client.post("/conversions/inspect", json={"asset_id": asset["id"], "topics": ["/nope"]})
    assert r.status_code == 422 and "/nope" in r.json()["detail"]
    r = await client.post("/conversions/inspect", json={"asset_id": "ghost"})
    assert r.status_code == 404 and r.json() == {"detail": "asset not found: ghost"}

    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": trigger_spec(), "sample_n": 2})
    assert r.status_code == 200, r.text
    preview = r.json()["preview"]
    assert len(preview["rows"]) == 2 and preview["bad_records"] == 0
    image = preview["rows"][0]["field_data"]["image"]
    assert image["__bytes__"] is True and image["encoding"] == "base64"
    assert preview["rows"][0]["field_data"]["acc"] == bf.imu_value(9)
    r = await client.post("/conversions/preview", json={"asset_id": asset["id"], "spec": {"mapping": None}})
    assert r.status_code == 422 and "row_strategy" in r.json()["detail"]
