"""What the reference's Vue frontend reads, found by driving it against Kiln (docs/arted.md, "The frontend")."""

from __future__ import annotations

import httpx


async def test_configs_with_properties_feeds_the_selection_screen(arted: httpx.AsyncClient) -> None:
    # The start screen (`/select`, configSelection store) and the execution view's config lookup both
    # fetch this route; a 404 left the selection screen on "Fehler beim Laden" and the execution view
    # without its config.
    r = await arted.get("/pipeline_configs_with_properties")
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {c["id"]: c for c in body["configs"]}
    assert {"dada", "bauhaus", "surrealism", "haiku", "soundscape"} <= set(by_id)
    assert "sd35_large" not in by_id and "stableaudio" not in by_id  # output configs are not user-facing
    dada = by_id["dada"]
    assert dada["properties"] and all(isinstance(p, str) for p in dada["properties"])
    # tiles render name[lang] and short_description[lang] for lang in (de, en)
    for key in ("name", "description", "short_description"):
        assert set(dada[key]) >= {"en", "de"} and all(dada[key].values()), key
    assert dada["pipeline"] == "text_transformation" and dada["icon"] and dada["owner"] == "system"
    assert dada["media_preferences"]["default_output"] == "image"
    assert isinstance(body["property_pairs"], list) and body["symbols_enabled"] is False
    # a category symbol per category: every config of a category carries an icon
    assert all(c.get("icon") for c in body["configs"])


async def test_overdrive_is_shipped_for_the_views_opened_without_a_config(arted: httpx.AsyncClient) -> None:
    # `/text-transformation` and `/direct` send `schema: selectedConfig?.id || 'overdrive'`; opened
    # directly (no config chosen on the start screen) their Start button answered "Config 'overdrive'
    # not found".
    r = await arted.post(
        "/api/schema/pipeline/stage2",
        json={
            "schema": "overdrive",
            "input_text": "Ein Hund spielt Schach",
            "user_language": "de",
            "safety_level": "youth",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["interception_result"]
    listed = {c["id"] for c in (await arted.get("/pipeline_configs_with_properties")).json()["configs"]}
    assert "overdrive" in listed


async def test_a_block_tells_the_user_why_in_their_language(arted: httpx.AsyncClient) -> None:
    # The views show `error` as is (`alert("Fehler: " + error)`): a German UI showed "Blocked by the
    # safety check", in English and without the reason the reference gives (§86a / Jugendschutz / ...).
    body = {"schema": "dada", "input_text": "Eine Hakenkreuz Fahne", "user_language": "de", "safety_level": "youth"}
    for path in ("/api/schema/pipeline/stage2", "/api/schema/pipeline/execute"):
        r = await arted.post(path, json=body)
        assert r.status_code == 403, r.text
        assert "§86a" in r.json()["error"] and "blockiert" in r.json()["error"], r.json()
        assert r.json()["metadata"]["safety_codes"] == ["§86a"]
    r = await arted.post(
        "/api/schema/pipeline/stage2", json={**body, "input_text": "hardcore pictures", "user_language": "en"}
    )
    assert r.status_code == 403 and "youth protection" in r.json()["error"], r.text
