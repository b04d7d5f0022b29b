"""Arted fixtures: the app with fake LLM and ComfyUI servers configured, and a scripted LLM persona."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from kiln.providers.config import ProviderSettings
from tests.fakes.comfyui import FakeComfyUI, fake_comfyui  # noqa: F401  (fixture)
from tests.fakes.openai_llm import FakeLLM, Reply, fake_llm  # noqa: F401  (fixture)


def role_of(request: dict[str, Any]) -> str:
    system = next((m["content"] for m in request["messages"] if m["role"] == "system"), "")
    if "safety check" in system:
        return "guard"
    if system.startswith("Translate"):
        return "translate"
    return "intercept"


def user_text(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def persona(guard: str | Reply = "SAFE", stage3_guard: str | Reply | None = None):
    """Guard answers `guard` (stage 3: `stage3_guard` when given), interception and translation echo."""

    def respond(request: dict[str, Any]) -> str | Reply:
        role = role_of(request)
        text = user_text(request)
        if role == "guard":
            if stage3_guard is not None and text.startswith("EN: "):
                return stage3_guard
            return guard
        if role == "translate":
            return f"EN: {text}"
        return f"Dada collage of {text}"

    return respond


@pytest.fixture
def providers(fake_llm: FakeLLM, fake_comfyui: FakeComfyUI) -> ProviderSettings:  # noqa: F811
    fake_llm.responder = persona()
    return ProviderSettings(
        _env_file=None,
        llm_url=fake_llm.url,
        llm_model="fake-chat",  # type: ignore[call-arg]
        comfyui_url=fake_comfyui.url,
        provider_max_retries=0,
        comfyui_timeout_seconds=20,
    )


@pytest.fixture
async def arted(app, client: httpx.AsyncClient, providers: ProviderSettings) -> httpx.AsyncClient:
    app.state.kernel.set_surface_settings(providers)
    return client


async def wait_status(client: httpx.AsyncClient, run_id: str, timeout: float = 15) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            body = (await client.get(f"/api/pipeline/{run_id}/status")).json()
            if body["status"] != "in_progress":
                return body
            await asyncio.sleep(0.05)


EXEC = "/api/schema/pipeline/execute"


def envelope(r: httpx.Response, code: int) -> dict:
    assert r.status_code == code, r.text
    body = r.json()
    assert {"error", "status", "details"} <= set(body), body
    return body
