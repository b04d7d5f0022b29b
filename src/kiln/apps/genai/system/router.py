"""`/health`, `/system/health`, `/v1/system/ping`, `/voice/wake-events`, `/voice/health` (public)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kiln.apps.genai.config import VoiceSettings
from kiln.apps.genai.deps import GenaiSettingsDep, KernelDep
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.platform import activation
from kiln.apps.genai.system import service

router = genai_router(tags=["genai"])
MAX_WAKE_BODY = 16 * 1024


@router.get("/health")
async def genai_health() -> dict[str, Any]:
    return {"status": "ok", "service": "backend"}


@router.get("/v1/system/ping")
async def ping() -> dict[str, Any]:
    return {"status": "ok", "service": "backend", "api": "v1"}


@router.get("/system/health")
async def system_health(kernel: KernelDep, settings: GenaiSettingsDep) -> dict[str, Any]:
    targets = [
        (name, container, url, path)
        for name, container, url, path in (
            ("LLM API", "llm", settings.llm_url, "/models"),
            ("LLM Runtime Embeddings", "llm_runtime_embeddings", settings.embeddings_url, "/models"),
            ("Qdrant", "qdrant", settings.qdrant_url, "/healthz"),
            ("Weaviate", "weaviate", settings.weaviate_url, "/v1/.well-known/ready"),
            ("MCP Gateway", "mcp_gateway", settings.mcp_url, "/health"),
            ("Sandbox", "sandbox", settings.sandbox_url, "/health"),
        )
        if url
    ]
    checks = await service.service_checks([(name, url, path) for name, _, url, path in targets])
    services = [{"service": "Backend", "container": "backend", "target": "kiln", "reachable": True}]
    services += [{**check, "container": container} for check, (_, container, _, _) in zip(checks, targets, strict=True)]
    try:
        async with kernel.db.session() as session:
            await asyncio.wait_for(session.execute(text("SELECT 1")), timeout=3)
            capabilities = await activation.capabilities(session)
        db_ok = True
    except Exception:  # reported, not raised: this route says what is down
        db_ok, capabilities = False, []
    database = "postgres" if not kernel.db.is_sqlite else "sqlite"
    services.append({"service": "Database", "container": database, "target": database, "reachable": db_ok})
    platform = (
        {"capabilities": capabilities}
        if db_ok
        else {"error": "platform_health_unavailable", "message": "Platform capability health is currently unavailable"}
    )
    return {
        "status": "ok" if all(s["reachable"] for s in services) else "degraded",
        "services": services,
        "platform": platform,
    }


def _wake_events(request: Request) -> service.WakeEvents:
    state = request.app.state
    events = getattr(state, "genai_wake_events", None)
    if events is None:
        events = state.genai_wake_events = service.WakeEvents()
    return events


@router.post("/voice/wake-events")
async def wake_events(request: Request, kernel: KernelDep) -> JSONResponse:
    raw = await request.body()
    if len(raw) > MAX_WAKE_BODY:
        raise GenaiError(413, "payload_too_large", "Wake event bodies are at most 16 kB")
    try:
        import json

        payload = json.loads(raw or b"{}")
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    cfg = kernel.surface_settings(VoiceSettings)
    status, body = _wake_events(request).accept(payload, cfg.kws_detection_threshold, cfg.kws_cooldown_ms)
    return JSONResponse(body, status_code=status)


@router.get("/voice/health")
async def voice_health(kernel: KernelDep) -> dict[str, Any]:
    cfg = kernel.surface_settings(VoiceSettings)
    kws: dict[str, Any] = {"url": cfg.kws_url or "", "configured": bool(cfg.kws_url), "reachable": False}
    if cfg.kws_url:
        kws["reachable"] = await service.reachable(cfg.kws_url, "/health")
    return {
        "status": "ok",
        "service": "backend",
        "voice": {"kws": kws, "stt": {"configured": False}, "tts": {"configured": False}},
    }
