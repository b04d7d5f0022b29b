"""Saved configs over HTTP: revisions, duplicate, run from config, migrate on load, drafts."""

from __future__ import annotations

import json

from sqlalchemy import update

from kiln.apps.robotics.models import ConversionConfig
from tests.apps.robotics.api_helpers import convert, outputs_of, recording, register, trigger_spec


async def test_create_update_duplicate_and_run(client, tmp_path):
    r = await client.post(
        "/conversion-configs", json={"name": "  Camera Set ", "description": "", "spec": trigger_spec()}
    )
    assert r.status_code == 201, r.text
    cfg = r.json()
    assert cfg["name"] == "Camera Set" and cfg["description"] is None and cfg["status"] == "ready"
    assert cfg["revision_count"] == 1 and cfg["draft_count"] == 0 and cfg["spec_document_version"] == 2
    assert cfg["spec_row_strategy_kind"] == "trigger" and cfg["spec_feature_count"] == 3
    assert cfg["spec_output_format"] == "parquet" and cfg["migration_notes"] == []
    assert cfg["revisions"][0]["change_kind"] == "create" and cfg["resolved_spec_document"]["spec_version"] == 2
    r = await client.post("/conversion-configs", json={"name": "camera   SET", "spec": trigger_spec()})
    assert r.status_code == 422 and r.json() == {"detail": "saved conversion config already exists: camera SET"}
    r = await client.post("/conversion-configs", json={"name": "bad", "spec": {"row_strategy": 3}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "spec", "row_strategy"]

    r = await client.patch(f"/conversion-configs/{cfg['id']}", json={"name": "Renamed Config"})
    assert r.status_code == 200 and r.json()["revision_count"] == 2
    rev = r.json()["revisions"][0]
    assert rev["revision_number"] == 2 and rev["change_kind"] == "update" and "Renamed Config" in rev["change_summary"]
    assert (await client.patch(f"/conversion-configs/{cfg['id']}", json={})).json() == {
        "detail": "update payload must include at least one field"
    }
    assert (await client.patch("/conversion-configs/ghost", json={"name": "x"})).status_code == 404

    dup = await client.post(f"/conversion-configs/{cfg['id']}/duplicate", json={})
    assert dup.status_code == 201 and dup.json()["name"] == "Copy of Renamed Config"
    assert dup.json()["revisions"][0]["change_kind"] == "create" and dup.json()["revision_count"] == 1
    dup2 = await client.post("/conversion-configs/renamed config/duplicate", json={})
    assert dup2.json()["name"] == "Copy of Renamed Config (2)"
    names = [c["name"] for c in (await client.get("/conversion-configs")).json()]
    assert names == ["Copy of Renamed Config (2)", "Copy of Renamed Config", "Renamed Config"]
    before = (await client.get("/conversion-configs")).json()
    await client.get(f"/conversion-configs/{cfg['id']}")
    assert (await client.get("/conversion-configs")).json() == before  # reading changes nothing

    asset = await register(client, recording(tmp_path))
    run = await convert(client, {"asset_ids": [asset["id"]], "saved_config_id": "Renamed Config"})
    assert run["config"]["mapping_mode"] == "saved-config" and run["config"]["saved_config_id"] == cfg["id"]
    assert run["config"]["saved_config_revision_number"] == 2
    assert run["config"]["saved_config_spec_document_version"] == 2
    assert run["job"]["config_json"]["saved_config_id"] == cfg["id"]
    assert any(f["role"] == "dataset" for f in await outputs_of(client, run))
    r = await client.get("/conversion-configs/ghost")
    assert r.status_code == 404 and r.json() == {"detail": "saved conversion config not found: ghost"}


async def test_migrate_on_load(client, app):
    spec = trigger_spec("tfrecord")
    cfg = (await client.post("/conversion-configs", json={"name": "old", "spec": spec})).json()
    async with app.state.kernel.db.session() as s:  # pretend it was saved by a version 1 writer
        old_doc = {"spec_version": 1, "spec": spec, "metadata": {}}
        await s.execute(
            update(ConversionConfig)
            .where(ConversionConfig.id == cfg["id"])
            .values(spec_document=old_doc, spec_document_version=1)
        )
        await s.commit()
    listed = (await client.get("/conversion-configs")).json()
    assert listed[0]["status"] == "needs_migration"
    opened = (await client.get(f"/conversion-configs/{cfg['id']}")).json()
    assert opened["status"] == "ready" and opened["resolved_spec_document"]["spec_version"] == 2
    assert opened["revision_count"] == 2 and opened["revisions"][0]["change_kind"] == "migration"
    assert any("migrate" in n for n in opened["migration_notes"])
    # version 1 tfrecord output keeps list-encoded images
    assert opened["resolved_spec"]["output"]["image_payload_contract"] == "legacy_list_v1"
    again = (await client.get(f"/conversion-configs/{cfg['id']}")).json()
    assert again["revision_count"] == 2  # migrated once, persisted


async def test_draft_persisted_and_saved_as_config(client, tmp_path):
    asset = await register(client, recording(tmp_path))
    r = await client.post(
        "/conversions/draft",
        json={
            "asset_id": asset["id"],
            "topics": ["/camera/image_raw", "/imu"],
            "sample_n": 3,
            "draft_request": {"output_format": "parquet", "preview_rows": 3},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["draft_revision_id"] and body["draft"]["trigger_topic"] == "/camera/image_raw"
    assert body["draft"]["spec"]["schema"]["name"] == "draft_conversion"
    assert body["representation_policy"]["output_format"] == "parquet"
    assert "__msgtype__" not in json.dumps(body)
    assert len(body["draft"]["preview"]["rows"]) == 3

    r = await client.post(
        "/conversion-configs", json={"name": "from draft", "draft_revision_id": body["draft_revision_id"]}
    )
    assert r.status_code == 201, r.text
    opened = (await client.get(f"/conversion-configs/{r.json()['id']}")).json()
    assert opened["status"] == "ready" and opened["draft_count"] == 1 and opened["latest_preview_available"]
    [draft] = opened["draft_revisions"]
    assert draft["id"] == body["draft_revision_id"] and draft["status"] == "saved"
    assert draft["source_asset_id"] == asset["id"] and opened["latest_preview"]["rows"]
    r = await client.post("/conversion-configs", json={"name": "x", "draft_revision_id": "nope"})
    assert r.status_code == 404
