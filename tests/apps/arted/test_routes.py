"""Every route's shapes, errors and bad inputs in the arted envelope; configs; stage2 and stage3-4."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from docx import Document
from lxml import etree

from kiln.apps.arted.config import ArtedSettings
from kiln.providers.config import ProviderSettings
from tests.apps.arted.conftest import role_of
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_llm import FakeLLM

EXEC = "/api/schema/pipeline/execute"


def envelope(r: httpx.Response, code: int) -> dict:
    assert r.status_code == code, r.text
    body = r.json()
    assert {"error", "status", "details"} <= set(body), body
    return body


@pytest.mark.parametrize("payload, code, needle", [
    ({"schema": "nope", "input_text": "x"}, 404, "nope"),
    ({"schema": "dada", "input_text": "x", "safety_level": "adult"}, 400, "safety_level"),
    ({"schema": "dada", "input_text": "x", "seed": "abc"}, 400, "seed"),
    ({"schema": "dada", "input_text": "x", "seed": 1.5}, 400, "seed"),
    ({"schema": "dada", "input_text": "x", "seed": True}, 400, "seed"),
    ({"schema": "dada", "input_text": "x", "seed": -1}, 400, "seed"),
    ({"schema": "dada"}, 400, "Invalid request"),
    ({"schema": "dada", "input_text": "  \x01 "}, 400, "input_text"),
    ({"schema": "dada", "input_text": "x" * 5000}, 413, "longer"),
    ({"schema": "dada", "input_text": "x", "output_config": "dada"}, 404, "Output config"),
    ({"input_text": "x"}, 400, "Invalid request"),
])
async def test_execute_bad_input(arted: httpx.AsyncClient, fake_llm: FakeLLM, payload: dict, code: int,
                                 needle: str) -> None:
    body = envelope(await arted.post(EXEC, json=payload), code)
    assert needle in json.dumps(body)
    assert fake_llm.chat_calls == []


async def test_unknown_schema_names_valid_ids(arted: httpx.AsyncClient) -> None:
    body = envelope(await arted.post(EXEC, json={"schema": "nope", "input_text": "x"}), 404)
    assert "dada" in body["details"]["valid_ids"]
    assert envelope(await arted.get("/api/schema/nope"), 404)["details"]["valid_ids"]


async def test_not_json_and_not_configured(arted: httpx.AsyncClient, app, providers: ProviderSettings) -> None:
    envelope(await arted.post(EXEC, content=b"{", headers={"content-type": "application/json"}), 400)
    kernel = app.state.kernel
    kernel.set_surface_settings(providers.model_copy(update={"comfyui_url": None}))
    body = envelope(await arted.post(EXEC, json={"schema": "dada", "input_text": "x"}), 503)
    assert body["details"]["missing_settings"] == ["KILN_COMFYUI_URL"] and "KILN_COMFYUI_URL" in body["error"]
    kernel.set_surface_settings(providers.model_copy(update={"llm_url": None, "llm_model": None, "comfyui_url": None}))
    body = envelope(await arted.post(EXEC, json={"schema": "dada", "input_text": "x"}), 503)
    assert body["details"]["missing_settings"] == ["KILN_LLM_URL", "KILN_LLM_MODEL", "KILN_COMFYUI_URL"]


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
    assert pipe == {"config_id": "dada", "pipeline_name": "text_transformation",
                    "pipeline_type": "prompt_interception", "pipeline_stage": "2",
                    "requires_interception_prompt": True, "input_requirements": {"texts": 1},
                    "description": pipe["description"]}


async def test_operator_config_dir(arted: httpx.AsyncClient, app, tmp_path: Path) -> None:
    (tmp_path / "interception").mkdir()
    (tmp_path / "interception" / "fluxus.json").write_text(json.dumps({
        "pipeline": "text_transformation", "name": {"en": "Fluxus"}, "context": "Event scores.",
        "media_preferences": {"default_output": "image"}}))
    (tmp_path / "interception" / "broken.json").write_text("{not json")
    (tmp_path / "interception" / "orphan.json").write_text(json.dumps({"pipeline": "nowhere"}))
    app.state.kernel.set_surface_settings(ArtedSettings(_env_file=None, config_dir=tmp_path))  # type: ignore[call-arg]
    info = (await arted.get("/api/schema/info")).json()
    assert "fluxus" in info["schemas"] and "broken" not in info["schemas"] and "orphan" not in info["schemas"]
    assert {e["name"] for e in info["config_errors"]} == {"interception/broken.json", "interception/orphan.json"}
    r = await arted.post(EXEC, json={"schema": "fluxus", "input_text": "Ein Klavier"})
    assert r.status_code == 200 and r.json()["media_output"]["config"] == "sd35_large"


async def test_unknown_runs_are_404(arted: httpx.AsyncClient) -> None:
    rid = str(uuid.uuid4())
    for path in (f"/api/pipeline/{rid}/status", f"/api/pipeline/{rid}/entities", f"/api/pipeline/{rid}/entity/input",
                 f"/api/media/image/{rid}", f"/api/media/info/{rid}", f"/api/media/run/{rid}",
                 "/api/media/image/not-a-uuid", "/api/pipeline/..%2E/status"):
        envelope(await arted.get(path), 404)
    assert (await arted.get("/api/pipeline/..%2F..%2Fetc/status")).status_code == 404  # no route matches
    body = envelope(await arted.get(f"/api/runs/{rid}"), 404)
    assert body["error"] == "Execution not found" and body["execution_id"] == rid
    envelope(await arted.get(f"/api/runs/{rid}/export/txt"), 404)
    assert (await arted.get(f"/api/media/gif/{rid}")).status_code == 404


async def test_history_filters_pages_stats_and_exports(arted: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    fake_llm.responder = lambda req: "SAFE" if role_of(req) == "guard" else "Collage\x07 mit <Klang> & \x0bTon"
    ids = []
    for i, schema in enumerate(["dada", "dada", "bauhaus"]):
        r = await arted.post(EXEC, json={"schema": schema, "input_text": f"Bild {i}", "user_id": f"u{i % 2}",
                                         "session_id": "s1"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["run_id"])
    page = (await arted.get("/api/runs", params={"limit": 2})).json()
    assert page["total"] == 3 and page["returned"] == 2 and "filters" not in page
    assert [e["execution_id"] for e in page["executions"]] == ids[::-1][:2]
    page2 = (await arted.get("/api/runs", params={"limit": 2, "offset": 2})).json()
    assert [e["execution_id"] for e in page2["executions"]] == [ids[0]]
    dada = (await arted.get("/api/runs", params={"config": "dada", "user_id": "u0"})).json()
    assert dada["total"] == 1 and dada["filters"]["config"] == "dada"
    today = page["executions"][0]["timestamp"][:10]
    assert (await arted.get("/api/runs", params={"date": today})).json()["total"] == 3
    assert (await arted.get("/api/runs", params={"date": "2001-01-01"})).json()["total"] == 0
    envelope(await arted.get("/api/runs", params={"date": "01.01.2001"}), 400)
    envelope(await arted.get("/api/runs", params={"limit": 0}), 400)
    envelope(await arted.get("/api/runs", params={"limit": "x"}), 400)
    envelope(await arted.get("/api/runs", params={"offset": -1}), 400)
    stats = (await arted.get("/api/runs/stats")).json()
    assert stats["total_records"] == 3 and stats["total_size_bytes"] > 0 and not stats["storage_dir"].startswith("/")

    rid = ids[0]
    j = await arted.get(f"/api/runs/{rid}/export/json")
    assert j.headers["content-type"] == "application/json"
    assert j.headers["content-disposition"] == f'attachment; filename="{rid}.json"'
    assert json.loads(j.content)["execution_id"] == rid
    x = await arted.get(f"/api/runs/{rid}/export/xml")
    root = etree.fromstring(x.content)
    assert x.headers["content-type"] == "application/xml" and root.get("id") == rid
    assert root.find("final_output").text == "Collage mit <Klang> & Ton"
    assert root.find("input_text").text == "Bild 0"
    assert f"/api/media/image/{rid}" in x.text
    p = await arted.get(f"/api/runs/{rid}/export/pdf")
    assert p.headers["content-type"] == "application/pdf" and p.content.startswith(b"%PDF") and b"%%EOF" in p.content
    d = await arted.get(f"/api/runs/{rid}/export/docx")
    assert zipfile.is_zipfile(io.BytesIO(d.content))
    text = "\n".join(par.text for par in Document(io.BytesIO(d.content)).paragraphs)
    assert "Collage mit <Klang> & Ton" in text and f"/api/media/image/{rid}" in text
    body = envelope(await arted.get(f"/api/runs/{rid}/export/txt"), 400)
    assert body["supported_formats"] == ["json", "xml", "pdf", "docx"]


async def test_stage2_then_stage34(arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> None:
    r = await arted.post("/api/schema/pipeline/stage2", json={"schema": "dada", "input_text": "Ein Vogel"})
    assert r.status_code == 200, r.text
    s2 = r.json()
    assert s2["success"] is True and s2["stage2_result"] == "Dada collage of Ein Vogel"
    assert s2["optimization_applied"] is True
    r = await arted.post("/api/schema/pipeline/stage3-4", json={
        "stage2_result": s2["stage2_result"], "output_config": "sd35_large", "run_id": s2["run_id"], "seed": 7})
    assert r.status_code == 200, r.text
    s34 = r.json()
    assert s34["success"] is True and s34["run_id"] == s2["run_id"] and s34["used_seed"] == 7
    media = s34["media_output"]
    assert media["url"] == f"/api/media/image/{s2['run_id']}" and media["seed"] == 7 and media["media_stored"]
    assert (await arted.get(media["url"])).headers["content-type"] == "image/png"
    # the same run id again is a conflict
    again = await arted.post("/api/schema/pipeline/stage3-4", json={
        "stage2_result": "x", "output_config": "sd35_large", "run_id": s2["run_id"]})
    envelope(again, 409)
    envelope(await arted.post("/api/schema/pipeline/stage3-4", json={"stage2_result": "x", "output_config": "dada"}),
             400)
    blocked = await arted.post("/api/schema/pipeline/stage2", json={"schema": "dada", "input_text": "Heil Hitler"})
    body = envelope(blocked, 403)
    assert body["success"] is False and body["blocked_at_stage"] == 1


async def test_token_user_is_recorded(arted: httpx.AsyncClient, app) -> None:
    from kiln.core.auth.service import create_api_token, create_user

    async with app.state.kernel.db.session() as s:
        user = await create_user(s, "artist@example.org", "pw-123456789", role="user")
        token = await create_api_token(s, user, "arted")
        await s.commit()
    secret = token[1] if isinstance(token, tuple) else token
    r = await arted.post(EXEC, json={"schema": "dada", "input_text": "Ein Baum", "user_id": "spoof"},
                         headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    record = (await arted.get(f"/api/runs/{r.json()['run_id']}")).json()
    assert record["user_id"] == "artist@example.org"
    envelope(await arted.post(EXEC, json={"schema": "dada", "input_text": "x"},
                              headers={"Authorization": "Bearer nonsense"}), 401)


async def test_token_required_off_loopback(tmp_path: Path, db_url: str) -> None:
    from asgi_lifespan import LifespanManager

    from kiln.app import create_app
    from kiln.core.auth.service import create_api_token, create_user
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path / "home", db_url, host="0.0.0.0", apps=["arted"]), migrate=False)
    async with LifespanManager(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                      base_url="http://testserver") as http:
        body = envelope(await http.get("/api/schema/list"), 401)
        assert body["status"] == "unauthorized"
        async with app.state.kernel.db.session() as s:
            user = await create_user(s, "teacher@example.org", "pw-123456789")
            _, token = await create_api_token(s, user, "arted")
            await s.commit()
        ok = await http.get("/api/schema/list", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["schemas"]
