"""Quotes: admin management (list with filters and pages, summary, create, update) and the quote of
the day — a deterministic order per (language, year) by SHA-256, indexed by day of year; or random."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.content.models import GenaiQuote
from kiln.apps.genai.content.seed import text_hash
from kiln.apps.genai.errors import GenaiError

LANGUAGES = {"en", "es"}
DEFAULT_LANGUAGE = "en"
FILTERS = ("language", "source_universe", "tone", "origin")


def quote_dto(q: GenaiQuote) -> dict[str, Any]:
    return {
        "id": q.id,
        "language": q.language,
        "text": q.text,
        "author": q.author,
        "source_universe": q.source_universe,
        "tone": q.tone,
        "tags": list(q.tags or []),
        "is_active": q.is_active,
        "is_approved": q.is_approved,
        "origin": q.origin,
        "external_ref": q.external_ref,
        "created_at": q.created_at.isoformat() if q.created_at else None,
        "updated_at": q.updated_at.isoformat() if q.updated_at else None,
    }


def _bool(value: str | None, name: str) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise GenaiError(400, "invalid_filter", f"{name} must be true or false")


def _date(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise GenaiError(400, "invalid_filter", f"{name} must be an ISO date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def list_quotes(session: AsyncSession, params: dict[str, str], page: int, page_size: int) -> dict[str, Any]:
    query = select(GenaiQuote)
    applied: dict[str, Any] = {}
    for name in FILTERS:
        if value := params.get(name):
            query = query.where(getattr(GenaiQuote, name) == value[:255])
            applied[name] = value[:255]
    for name in ("is_active", "is_approved"):
        flag = _bool(params.get(name), name)
        if flag is not None:
            query = query.where(getattr(GenaiQuote, name).is_(flag))
            applied[name] = flag
    if start := _date(params.get("created_from"), "created_from"):
        query = query.where(GenaiQuote.created_at >= start)
        applied["created_from"] = params["created_from"]
    if end := _date(params.get("created_to"), "created_to"):
        query = query.where(GenaiQuote.created_at <= end)
        applied["created_to"] = params["created_to"]
    if text := (params.get("query") or "").strip()[:200]:
        query = query.where(
            or_(GenaiQuote.text.contains(text, autoescape=True), GenaiQuote.author.contains(text, autoescape=True))
        )
        applied["query"] = text
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(query.order_by(GenaiQuote.id).limit(page_size).offset((page - 1) * page_size))
    return {
        "items": [quote_dto(q) for q in rows.scalars()],
        "page": page,
        "page_size": page_size,
        "total": int(total or 0),
        "filters": applied,
    }


async def summary(session: AsyncSession) -> dict[str, Any]:
    total = await session.scalar(select(func.count()).select_from(GenaiQuote)) or 0
    active = await session.scalar(select(func.count()).where(GenaiQuote.is_active.is_(True))) or 0
    approved = await session.scalar(select(func.count()).where(GenaiQuote.is_approved.is_(True))) or 0
    out: dict[str, Any] = {"total": total, "active": active, "approved": approved}
    for name in ("language", "tone", "origin"):
        column = getattr(GenaiQuote, name)
        rows = await session.execute(select(column, func.count()).group_by(column).order_by(column))
        out[f"by_{name}"] = [{"value": value, "count": count} for value, count in rows]
    return out


async def get_quote(session: AsyncSession, quote_id: int) -> GenaiQuote:
    row = await session.get(GenaiQuote, quote_id) if 0 < quote_id < 2**31 else None
    if row is None:
        raise GenaiError(404, "quote_not_found", "Quote not found")
    return row


def _fields(body: dict[str, Any]) -> dict[str, Any]:
    def text(name: str, limit: int, required: bool = True) -> str:
        value = body.get(name)
        if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
            raise GenaiError(400, f"invalid_{name}", f"{name} is required (at most {limit} characters)")
        return value.strip()

    tags = body.get("tags") or []
    if not isinstance(tags, list) or len(tags) > 20 or not all(isinstance(t, str) and len(t) <= 64 for t in tags):
        raise GenaiError(400, "invalid_tags", "tags must be a list of at most 20 short strings")
    origin = str(body.get("origin") or "local")
    if origin not in ("local", "cloud"):
        raise GenaiError(400, "invalid_origin", "origin must be local or cloud")
    language = text("language", 8).lower()
    if language not in LANGUAGES:
        raise GenaiError(400, "invalid_language", f"language must be one of {sorted(LANGUAGES)}")
    return {
        "language": language,
        "text": text("text", 2000),
        "author": text("author", 255),
        "source_universe": text("source_universe", 255),
        "tone": text("tone", 64),
        "tags": tags,
        "is_active": bool(body.get("is_active", True)),
        "is_approved": bool(body.get("is_approved", True)),
        "origin": origin,
        "external_ref": str(body.get("external_ref") or "")[:255] or None,
    }


async def save_quote(session: AsyncSession, body: dict[str, Any], quote_id: int | None = None) -> GenaiQuote:
    fields = _fields(body)
    digest = text_hash(fields["text"])
    clash = await session.scalar(
        select(GenaiQuote.id).where(GenaiQuote.language == fields["language"], GenaiQuote.text_hash == digest)
    )
    if clash is not None and clash != quote_id:
        raise GenaiError(409, "duplicate_quote", "This quote already exists in that language")
    row = await get_quote(session, quote_id) if quote_id is not None else GenaiQuote()
    for key, value in fields.items():
        setattr(row, key, value)
    row.text_hash = digest
    if quote_id is None:
        session.add(row)
    await session.flush()
    return row


async def quote_of_the_day(
    session: AsyncSession, language: str | None, selection: str, today: date | None = None
) -> dict[str, Any]:
    lang = (language or DEFAULT_LANGUAGE).strip().lower()[:8]
    lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    today = today or datetime.now(UTC).date()
    for candidate in dict.fromkeys([lang, DEFAULT_LANGUAGE]):
        quotes = list(
            (
                await session.execute(
                    select(GenaiQuote).where(
                        GenaiQuote.language == candidate,
                        GenaiQuote.is_active.is_(True),
                        GenaiQuote.is_approved.is_(True),
                    )
                )
            ).scalars()
        )
        if not quotes:
            continue
        if selection == "random":
            chosen = random.choice(quotes)
        else:
            ordered = sorted(
                quotes,
                key=lambda q: (hashlib.sha256(f"{candidate}:{today.year}:{q.id}:{q.text}".encode()).hexdigest(), q.id),
            )
            chosen = ordered[(today.timetuple().tm_yday - 1) % len(ordered)]
        return {
            "id": chosen.id,
            "text": chosen.text,
            "author": chosen.author,
            "source_universe": chosen.source_universe,
            "tone": chosen.tone,
            "language": chosen.language,
            "date": today.isoformat(),
            "origin": chosen.origin,
        }
    raise GenaiError(404, "quote_not_found", "No active quotes")
