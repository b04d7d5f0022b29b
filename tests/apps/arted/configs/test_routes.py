"""Config routes: listing, companions, unknown ids, operator configs (bad ones reported and skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from kiln.apps.arted.config import ArtedSettings
from tests.apps.arted.conftest import EXEC, envelope


async def test_unknown_schema_names_valid_ids(arted: httpx.AsyncClient) -> None:
    body = envelope(await arted.post(EXEC, json={"schema": "nope", "input_text": "x"}), 404)
    assert "dada" in body["details"]["valid_ids"]
    assert envelope(await arted.get("/api/schema/nope"), 404)["details"]["valid_ids"]


async def test_schema_routes(arted: httpx.AsyncClient) -> None:
    schemas = (await arted.get("/api/schema/list")).json()["schemas"]
    by_id = {s["id"]: s for s in schemas}
    assert {"dada", "bauhaus", "surrealism", "haiku", "soundscape", "sd35_large", "stableaudio"} <= set(by_id)
    assert set(by_id["dada"]) >= {"id", "name", "description", "pipeline", "media_preferences"}
    assert by_id["dada"]["pipeline"] == "text_transformation"
    assert by_id["soundscape"]["media_preferences"]["default_output"] == "audio"
    detail = (await arted.get("/api/schema/dada")).json()
    assert detail["id"] == "dada" and detail["chunks"] == ["manipulate"] and detail["context"]["de"]
    info = (await arted.get("/api/schema/info")).json()
    assert info["schemas_available"] == len(info["schemas"]) and info["config_errors"] == []
    full = (await arted.get("/api/schema/schemas")).json()["schemas"]
    assert {"name", "display_name", "description", "pipeline_name", "chunks", "parameters", "meta"} <= set(full[0])
    meta = (await arted.get("/pipeline_configs_metadata")).json()["configs"]
    assert "sd35_large" not in {c["id"] for c in meta} and {"display", "audience"} <= set(meta[0])
    ctx = (await arted.get("/api/config/dada/context")).json()
    assert ctx["config_id"] == "dada" and "Dada" in ctx["context"]["en"]
    envelope(await arted.get("/api/config/sd35_large/context"), 404)
    pipe = (await arted.get("/api/config/dada/pipeline")).json()
    assert pipe == {
        "config_id": "dada",
        "pipeline_name": "text_transformation",
        "pipeline_type": "prompt_interception",
        "pipeline_stage": "2",
        "requires_interception_prompt": True,
        "input_requirements": {"texts": 1},
        "description": pipe["description"],
    }


async def test_operator_config_dir(arted: httpx.AsyncClient, app, tmp_path: Path) -> None:
    (tmp_path / "interception").mkdir()
    (tmp_path / "interception" / "fluxus.json").write_text(
        json.dumps(
            {
                "pipeline": "text_transformation",
                "name": {"en": "Fluxus"},
                "context": "Event scores.",
                "media_preferences": {"default_output": "image"},
            }
        )
    )
    (tmp_path / "interception" / "broken.json").write_text("{not json")
    (tmp_path / "interception" / "orphan.json").write_text(json.dumps({"pipeline": "nowhere"}))
    app.state.kernel.set_surface_settings(ArtedSettings(_env_file=None, config_dir=tmp_path))  # type: ignore[call-arg]
    info = (await arted.get("/api/schema/info")).json()
    assert "fluxus" in info["schemas"] and "broken" not in info["schemas"] and "orphan" not in info["schemas"]
    assert {e["name"] for e in info["config_errors"]} == {"interception/broken.json", "interception/orphan.json"}
    r = await arted.post(EXEC, json={"schema": "fluxus", "input_text": "Ein Klavier"})
    assert r.status_code == 200 and r.json()["media_output"]["config"] == "sd35_large"
