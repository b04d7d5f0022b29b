"""Execute, stage2 and stage3-4 routes: bad inputs and missing settings in the arted envelope."""

from __future__ import annotations

import json

import httpx
import pytest

from kiln.providers.config import ProviderSettings
from tests.apps.arted.conftest import EXEC, envelope
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_llm import FakeLLM


@pytest.mark.parametrize(
    "payload, code, needle",
    [
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
    ],
)
async def test_execute_bad_input(
    arted: httpx.AsyncClient, fake_llm: FakeLLM, payload: dict, code: int, needle: str
) -> None:
    body = envelope(await arted.post(EXEC, json=payload), code)
    assert needle in json.dumps(body)
    assert fake_llm.chat_calls == []


async def test_not_json_and_not_configured(arted: httpx.AsyncClient, app, providers: ProviderSettings) -> None:
    envelope(await arted.post(EXEC, content=b"{", headers={"content-type": "application/json"}), 400)
    kernel = app.state.kernel
    kernel.set_surface_settings(providers.model_copy(update={"comfyui_url": None}))
    body = envelope(await arted.post(EXEC, json={"schema": "dada", "input_text": "x"}), 503)
    assert body["details"]["missing_settings"] == ["KILN_COMFYUI_URL"] and "KILN_COMFYUI_URL" in body["error"]
    kernel.set_surface_settings(providers.model_copy(update={"llm_url": None, "llm_model": None, "comfyui_url": None}))
    body = envelope(await arted.post(EXEC, json={"schema": "dada", "input_text": "x"}), 503)
    assert body["details"]["missing_settings"] == ["KILN_LLM_URL", "KILN_LLM_MODEL", "KILN_COMFYUI_URL"]


async def test_stage2_then_stage34(arted: httpx.AsyncClient, fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> None:
    r = await arted.post("/api/schema/pipeline/stage2", json={"schema": "dada", "input_text": "Ein Vogel"})
    assert r.status_code == 200, r.text
    s2 = r.json()
    assert s2["success"] is True and s2["stage2_result"] == "Dada collage of Ein Vogel"
    assert s2["optimization_applied"] is True
    r = await arted.post(
        "/api/schema/pipeline/stage3-4",
        json={"stage2_result": s2["stage2_result"], "output_config": "sd35_large", "run_id": s2["run_id"], "seed": 7},
    )
    assert r.status_code == 200, r.text
    s34 = r.json()
    assert s34["success"] is True and s34["run_id"] == s2["run_id"] and s34["used_seed"] == 7
    media = s34["media_output"]
    assert media["url"] == f"/api/media/image/{s2['run_id']}" and media["seed"] == 7 and media["media_stored"]
    assert (await arted.get(media["url"])).headers["content-type"] == "image/png"
    # the same run id again is a conflict
    again = await arted.post(
        "/api/schema/pipeline/stage3-4",
        json={"stage2_result": "x", "output_config": "sd35_large", "run_id": s2["run_id"]},
    )
    envelope(again, 409)
    envelope(
        await arted.post("/api/schema/pipeline/stage3-4", json={"stage2_result": "x", "output_config": "dada"}), 400
    )
    blocked = await arted.post("/api/schema/pipeline/stage2", json={"schema": "dada", "input_text": "Heil Hitler"})
    body = envelope(blocked, 403)
    assert body["success"] is False and body["blocked_at_stage"] == 1
