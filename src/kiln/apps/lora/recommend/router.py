"""Recommendation routes (`/recommendations/...`)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from kiln.apps.lora.errors import LoraRoute
from kiln.apps.lora.models import Adapter
from kiln.apps.lora.recommend import service
from kiln.core.db import utcnow
from kiln.core.deps import SessionDep

router = APIRouter(route_class=LoraRoute, tags=["lora: recommendations"])


def engine(request: Request) -> service.Engine:
    state = request.app.state
    if getattr(state, "lora_recommender", None) is None:
        state.lora_recommender = service.Engine()
    return state.lora_recommender


class PromptRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=4000)
    active_loras: list[str] = Field(default_factory=list, max_length=1000)
    limit: int = Field(default=10, ge=1, le=50)
    include_explanations: bool = True
    style_preference: str | None = Field(default=None, max_length=100)
    technical_requirements: dict[str, Any] | None = None


class ComputeRequest(BaseModel):
    adapter_ids: list[str] = Field(default_factory=list, max_length=100_000)
    force_recompute: bool = False
    compute_all: bool = False
    batch_size: int = Field(default=32, ge=1, le=128)


class FeedbackRequest(BaseModel):
    recommended_lora_id: str = Field(max_length=64)
    feedback_type: Literal["positive", "negative", "activated", "ignored", "dismissed"]
    context: str | None = Field(default=None, max_length=4000)
    feedback_reason: str | None = Field(default=None, max_length=2000)


def _response(eng: service.Engine, started: float, items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "target_lora_id": None,
        "prompt": None,
        **extra,
        "recommendations": items,
        "total_candidates": len(items),
        "processing_time_ms": eng.record(started),
        "generated_at": utcnow().isoformat(),
    }


@router.get("/recommendations/similar/{lora_id}")
async def similar(
    lora_id: str,
    request: Request,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    similarity_threshold: Annotated[float, Query(ge=0, le=1)] = 0.1,
    diversify_results: bool = True,
) -> dict[str, Any]:
    eng, started = engine(request), time.perf_counter()
    items = await service.similar(session, eng, lora_id, limit=limit, threshold=similarity_threshold)
    answer = _response(
        eng,
        started,
        items,
        target_lora_id=lora_id,
        recommendation_config={
            "device": "cpu",
            "gpu_enabled": False,
            "similarity_threshold": similarity_threshold,
            "model": eng.encoder.model_id,
        },
    )
    # The SPA's recommendations screen reads this answer's `data` (it unwraps an already
    # unwrapped body), so the answer carries itself once more there.
    return {**answer, "data": dict(answer)}


@router.post("/recommendations/for-prompt")
async def for_prompt(body: PromptRequest, request: Request, session: SessionDep) -> dict[str, Any]:
    eng, started = engine(request), time.perf_counter()
    items = await service.for_prompt(session, eng, body.prompt, exclude=body.active_loras, limit=body.limit)
    return _response(
        eng,
        started,
        items,
        prompt=body.prompt,
        recommendation_config={
            "device": "cpu",
            "gpu_enabled": False,
            "style_preference": body.style_preference,
            "technical_requirements": body.technical_requirements,
            "model": eng.encoder.model_id,
        },
    )


@router.get("/recommendations/stats")
async def stats(request: Request, session: SessionDep) -> dict[str, Any]:
    return await service.stats(session, engine(request))


@router.post("/recommendations/embeddings/compute")
async def compute(body: ComputeRequest, request: Request, session: SessionDep) -> dict[str, Any]:
    stmt = select(Adapter)
    if body.adapter_ids and not body.compute_all:
        stmt = stmt.where(Adapter.id.in_(body.adapter_ids))
    adapters = list((await session.scalars(stmt)).all())
    return await service.compute(
        session, engine(request), adapters, force=body.force_recompute, batch_size=body.batch_size
    )


@router.get("/recommendations/embeddings/{lora_id}")
async def embedding_status(lora_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    return await service.embedding_status(session, lora_id, engine(request).encoder.model_id)


@router.post("/recommendations/feedback", status_code=201)
async def feedback(body: FeedbackRequest, session: SessionDep) -> dict[str, Any]:
    return await service.add_feedback(
        session, body.recommended_lora_id, body.feedback_type, body.context, body.feedback_reason
    )
