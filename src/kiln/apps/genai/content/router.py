"""`/v1/quotes*` (admin) and `/v1/content/quote-of-the-day` (public)."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Query, Request

from kiln.apps.genai.content import service
from kiln.apps.genai.deps import AdminUser, SessionDep
from kiln.apps.genai.errors import genai_router

router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)


@router.get("/v1/content/quote-of-the-day")
async def quote_of_the_day(
    session: SessionDep,
    lang: str | None = Query(default=None, max_length=16),
    selection: str = Query(default="daily", pattern="^(daily|random)$"),
) -> dict[str, Any]:
    return {"quote": await service.quote_of_the_day(session, lang, selection)}


@router.get("/v1/quotes/summary")
async def quotes_summary(user: AdminUser, session: SessionDep) -> dict[str, Any]:
    return {"summary": await service.summary(session)}


@router.get("/v1/quotes")
async def list_quotes(
    request: Request,
    user: AdminUser,
    session: SessionDep,
    page: int = Query(1, ge=1, le=100_000),
    page_size: int = Query(20, ge=1, le=200),
) -> dict[str, Any]:
    params = {key: value for key, value in request.query_params.items() if key not in ("page", "page_size")}
    return await service.list_quotes(session, params, page, page_size)


@router.get("/v1/quotes/{quote_id}")
async def get_quote(quote_id: int, user: AdminUser, session: SessionDep) -> dict[str, Any]:
    return {"quote": service.quote_dto(await service.get_quote(session, quote_id))}


@router.post("/v1/quotes", status_code=201)
async def create_quote(user: AdminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    row = await service.save_quote(session, body)
    await session.commit()
    return {"quote": service.quote_dto(row)}


@router.put("/v1/quotes/{quote_id}")
async def update_quote(
    quote_id: int, user: AdminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    row = await service.save_quote(session, body, quote_id)
    await session.commit()
    return {"quote": service.quote_dto(row)}
