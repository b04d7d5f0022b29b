"""Recorder, media and history routes: unknown runs, filters, pagination, stats and the four exports."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import httpx
from docx import Document
from lxml import etree

from tests.apps.arted.conftest import EXEC, envelope, role_of
from tests.fakes.openai_llm import FakeLLM


async def test_unknown_runs_are_404(arted: httpx.AsyncClient) -> None:
    rid = str(uuid.uuid4())
    for path in (
        f"/api/pipeline/{rid}/status",
        f"/api/pipeline/{rid}/entities",
        f"/api/pipeline/{rid}/entity/input",
        f"/api/media/image/{rid}",
        f"/api/media/info/{rid}",
        f"/api/media/run/{rid}",
        "/api/media/image/not-a-uuid",
        "/api/pipeline/..%2E/status",
    ):
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
        r = await arted.post(
            EXEC, json={"schema": schema, "input_text": f"Bild {i}", "user_id": f"u{i % 2}", "session_id": "s1"}
        )
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
