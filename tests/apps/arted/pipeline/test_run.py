"""End-to-end runs against the fake LLM and ComfyUI: shapes, recorder, media, fail-closed safety."""

from __future__ import annotations

import asyncio
import io

import httpx
from PIL import Image

from kiln.providers.config import ProviderSettings
from tests.apps.arted.conftest import persona, role_of, user_text, wait_status
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_llm import FakeLLM, Reply

TEXT = "Ein Hund spielt im Garten"


async def test_execute_runs_four_stages(arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> None:
    r = await arted.post(
        "/api/schema/pipeline/execute",
        json={"schema": "dada", "input_text": TEXT, "safety_level": "kids", "seed": 4242},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    run_id = body["run_id"]
    assert body["status"] == "success" and body["schema"] == "dada" and body["safety_level"] == "kids"
    assert body["execution_mode"] == "eco" and body["outputs_generated"] == 1 and body["used_seed"] == 4242
    assert body["final_output"] == f"Dada collage of {TEXT}"
    assert [b["stage"] for b in body["backend_info"]] == [1, 2, 3, 3, 4]
    assert body["backend_info"][1]["model"] == "fake-chat" and body["backend_info"][-1]["backend"] == "comfyui"
    assert body["execution_time"] > 0
    media = body["media_output"]
    assert media["status"] == "success" and media["url"] == f"/api/media/image/{run_id}"
    assert media["metadata"]["seed"] == 4242

    # stage 2 got the user's own text, stage 3 translated the interception, the seed reached the graph
    calls = [c["json"] for c in fake_llm.chat_calls]
    assert [role_of(c) for c in calls] == ["guard", "intercept", "translate", "guard"]
    assert user_text(calls[0]) == TEXT and user_text(calls[1]) == TEXT
    assert calls[1]["stream"] is True and calls[1]["temperature"] == 0.8
    graph = fake_comfyui.prompts[0]["graph"]
    assert graph["3"]["inputs"]["seed"] == 4242
    assert graph["6"]["inputs"]["text"] == f"EN: Dada collage of {TEXT}"
    assert graph["9"]["inputs"]["filename_prefix"] == f"kiln_arted/{run_id}"

    status = (await arted.get(f"/api/pipeline/{run_id}/status")).json()
    assert status["status"] == "completed" and status["current_stage"] == 4 and status["elapsed_time"] > 0
    entities = (await arted.get(f"/api/pipeline/{run_id}/entities")).json()["entities"]
    assert [(e["sequence"], e["type"]) for e in entities] == [
        ("01", "input"),
        ("02", "safety"),
        ("03", "interception"),
        ("04", "translation"),
        ("05", "safety_pre_output"),
        ("06", "output_image"),
    ]
    assert all(e["available"] for e in entities) and entities[5]["mime_type"] == "image/png"
    assert entities[0]["url"] == f"/api/pipeline/{run_id}/entity/input"
    text = await arted.get(f"/api/pipeline/{run_id}/entity/input")
    assert text.text == TEXT and text.headers["content-type"].startswith("text/plain")
    safety = await arted.get(f"/api/pipeline/{run_id}/entity/safety")
    assert safety.json()["safe"] is True and safety.json()["method"] == "llm_guard"
    assert (await arted.get(f"/api/pipeline/{run_id}/entity/4")).text.startswith("EN: ")

    # the media is exactly the file of that prompt, with ranges
    image = await arted.get(f"/api/media/image/{run_id}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == next(iter(fake_comfyui.files.values()))
    assert Image.open(io.BytesIO(image.content)).text["seed"] == "4242"
    part = await arted.get(f"/api/media/image/{run_id}", headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == b"\x89PNG\r\n\x1a\n"
    assert (await arted.get(f"/api/media/audio/{run_id}")).status_code == 404
    info = (await arted.get(f"/api/media/info/{run_id}")).json()
    assert info["outputs"][0]["width"] == 64 and info["outputs"][0]["file_size_bytes"] == len(image.content)
    run = (await arted.get(f"/api/media/run/{run_id}")).json()
    assert run["transformed_text"] == body["final_output"] and run["user_id"] == "anonymous"

    record = (await arted.get(f"/api/runs/{run_id}")).json()
    assert record["execution_id"] == run_id and record["used_seed"] == 4242
    types = [i["item_type"] for i in record["items"]]
    assert types == [
        "pipeline_start",
        "user_input_text",
        "stage1_safety_check",
        "interception_final",
        "translation_result",
        "stage3_safety_check",
        "output_image",
        "pipeline_complete",
    ]
    assert [i["sequence_number"] for i in record["items"]] == list(range(1, 9))


async def test_async_execute_and_audio(arted: httpx.AsyncClient, fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.delay = 0.2
    r = await arted.post(
        "/api/schema/pipeline/execute?async=true",
        json={
            "schema": "soundscape",
            "input_text": "Regen auf einem Blechdach",
            "safety_level": "youth",
            "user_id": "DOE_J",
            "session_id": "workshop",
        },
    )
    assert r.status_code == 202 and r.json()["status"] == "queued"
    run_id = r.json()["run_id"]
    first = (await arted.get(f"/api/pipeline/{run_id}/status")).json()
    assert first["status"] == "in_progress"
    final = await wait_status(arted, run_id)
    assert final["status"] == "completed" and final["end_time"]
    audio = await arted.get(f"/api/media/audio/{run_id}")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF"
    assert fake_comfyui.prompts[0]["graph"]["13"]["class_type"] == "SaveAudio"
    listing = (await arted.get("/api/runs", params={"user_id": "DOE_J", "session_id": "workshop"})).json()
    assert listing["total"] == 1 and listing["executions"][0]["execution_id"] == run_id


async def test_status_during_the_first_guard_call(arted: httpx.AsyncClient, fake_llm: FakeLLM) -> None:
    """The input is stored with the run's row and the run's start is written with stage 1's entity;
    meanwhile the status reads the started job: stage 1, its start time, the input available."""
    fake_llm.responder = persona(guard=Reply("SAFE", delay=0.6))
    r = await arted.post(
        "/api/schema/pipeline/execute?async=true", json={"schema": "dada", "input_text": TEXT, "safety_level": "kids"}
    )
    run_id = r.json()["run_id"]
    async with asyncio.timeout(5):
        while not fake_llm.chat_calls:  # the guard has been asked: the job runs
            await asyncio.sleep(0.02)
    status = (await arted.get(f"/api/pipeline/{run_id}/status")).json()
    assert status["status"] == "in_progress" and "queued" not in status
    assert (status["current_stage"], status["current_step"]) == (1, "safety")
    assert status["elapsed_time"] is not None and status["progress"] == "1/6"
    entities = (await arted.get(f"/api/pipeline/{run_id}/entities")).json()["entities"]
    assert [e["type"] for e in entities] == ["input"]
    assert (await arted.get(f"/api/pipeline/{run_id}/entity/input")).text == TEXT
    final = await wait_status(arted, run_id)
    assert final["status"] == "completed" and final["current_stage"] == 4
    record = (await arted.get(f"/api/runs/{run_id}")).json()
    assert [i["item_type"] for i in record["items"]][:3] == ["pipeline_start", "user_input_text", "stage1_safety_check"]
    assert [i["sequence_number"] for i in record["items"]] == list(range(1, len(record["items"]) + 1))


async def test_concurrent_users_get_their_own_media(arted: httpx.AsyncClient, fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.delay = 0.05
    texts = [f"Bild Nummer {i} mit Katze" for i in range(4)]
    answers = await asyncio.gather(
        *(
            arted.post("/api/schema/pipeline/execute", json={"schema": "bauhaus", "input_text": t, "seed": i})
            for i, t in enumerate(texts)
        )
    )
    for i, answer in enumerate(answers):
        assert answer.status_code == 200, answer.text
        image = await arted.get(f"/api/media/image/{answer.json()['run_id']}")
        meta = Image.open(io.BytesIO(image.content)).text
        assert meta["seed"] == str(i) and texts[i] in meta["prompt"]


async def test_stage1_word_block_is_403_and_nothing_else_runs(
    arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI
) -> None:
    r = await arted.post(
        "/api/schema/pipeline/execute",
        json={"schema": "dada", "input_text": "Eine Fahne mit Hakenkreuz", "safety_level": "youth"},
    )
    assert r.status_code == 403
    body = r.json()
    assert body["status"] == "error" and body["error"] and body["metadata"]["stage"] == "pre_interception"
    assert "§86a" in body["metadata"]["safety_codes"]
    assert fake_llm.chat_calls == [] and fake_comfyui.prompts == []
    status = (await arted.get(f"/api/pipeline/{body['run_id']}/status")).json()
    assert status["status"] == "failed" and status["error"]["error_type"] == "safety_blocked"


async def test_stage1_fails_closed(arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> None:
    for guard, code in (
        (Reply(content="I think it is probably fine"), "guard_unparseable"),
        (Reply(status=500, content="model crashed"), "guard_unavailable"),
        (Reply(content="unsafe\nS1"), "S1"),
        (Reply(content="UNSAFE: violence"), "llm_unsafe"),
    ):
        fake_llm.responder = persona(guard=guard)
        r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Baum"})
        assert r.status_code == 403, (guard, r.text)
        assert r.json()["metadata"]["safety_codes"] == [code]
    assert fake_comfyui.prompts == []
    assert {role_of(c["json"]) for c in fake_llm.chat_calls} == {"guard"}


async def test_unreachable_guard_blocks(arted: httpx.AsyncClient, app, providers: ProviderSettings) -> None:
    app.state.kernel.set_surface_settings(providers.model_copy(update={"llm_url": "http://127.0.0.1:9/v1"}))
    r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Baum"})
    assert r.status_code == 403 and r.json()["metadata"]["safety_codes"] == ["guard_unavailable"]


async def test_stage3_block_skips_stage4(
    arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI
) -> None:
    fake_llm.responder = persona(stage3_guard="UNSAFE: frightening for children")
    r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Schloss"})
    assert r.status_code == 200, r.text
    media = r.json()["media_output"]
    assert media == {
        "config": "sd35_large",
        "media_type": "image",
        "safety_level": "kids",
        "status": "blocked",
        "reason": "frightening for children",
        "safety_codes": ["llm_unsafe"],
    }
    assert r.json()["outputs_generated"] == 0 and fake_comfyui.prompts == []
    entity = (await arted.get(f"/api/pipeline/{r.json()['run_id']}/entity/safety_pre_output")).json()
    assert entity["safe"] is False and entity["media_type"] == "image"


async def test_stage3_word_list_on_translation(
    arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI
) -> None:
    def respond(request):
        role = role_of(request)
        return {"guard": "SAFE", "translate": "a bloody battlefield"}.get(role, "ein rotes Feld")

    fake_llm.responder = respond
    r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Feld"})
    assert r.json()["media_output"]["status"] == "blocked"
    assert r.json()["media_output"]["safety_codes"] == ["kids_filter"] and fake_comfyui.prompts == []


async def test_upstream_errors(arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.mode = "error"
    r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Baum"})
    assert r.status_code == 502 and "CUDA out of memory" in r.json()["error"]
    assert r.json()["status"] == "upstream_error" and r.json()["run_id"]

    def respond(request):
        return Reply(status=503, content="overloaded") if role_of(request) == "intercept" else "SAFE"

    fake_llm.responder = respond
    r = await arted.post("/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Baum"})
    assert r.status_code == 502 and r.json()["details"] == {"stage": "interception"}


async def test_cancelled_run_is_closed_as_failed(arted: httpx.AsyncClient, app, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="SAFE", delay=1.5))
    r = await arted.post("/api/schema/pipeline/execute?async=true", json={"schema": "dada", "input_text": "Ein Baum"})
    run_id = r.json()["run_id"]
    kernel = app.state.kernel
    from kiln.apps.arted.models import Run

    async with kernel.db.session() as s:
        job_id = (await s.get(Run, run_id)).job_id
    await asyncio.sleep(0.3)
    await kernel.jobs.cancel(job_id)
    final = await wait_status(arted, run_id)
    assert final["status"] == "failed" and final["error"]["error_type"] == "job_cancelled"
    record = (await arted.get("/api/runs", params={"limit": 5})).json()["executions"][0]
    assert record["execution_id"] == run_id and record["status"] == "failed"


async def test_urls_carry_the_mount_prefix(app, arted: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=app, root_path="/arted")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as prefixed:
        r = await prefixed.post("/arted/api/schema/pipeline/execute", json={"schema": "dada", "input_text": "Ein Ei"})
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]
        assert r.json()["media_output"]["url"] == f"/arted/api/media/image/{run_id}"
        entities = (await prefixed.get(f"/arted/api/pipeline/{run_id}/entities")).json()["entities"]
        assert entities[0]["url"] == f"/arted/api/pipeline/{run_id}/entity/input"
        assert (await prefixed.get(f"/arted/api/media/image/{run_id}")).status_code == 200
