"""The history screen's query: succeeded generations filtered, sorted and summarised in SQL.

A result is a succeeded `lora.generate` job. What the screen filters and sorts on lives in the
job's JSON documents (prompt and size in `payload`, rating and favourite in `result`), read with
the database's own JSON operators (`JSON_EXTRACT` on SQLite, `->>` / `#>>` on PostgreSQL), so a
filter looks at every result, not at the newest few, and the summary counts every match.
Rows come out of `ix_jobs_surface_kind_created` newest first; every order ends on the job id,
so pages never overlap or skip a result whose sort key ties with another's.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.generation.schemas import HistoryQuery
from kiln.apps.lora.generation.service import GENERATE
from kiln.core.jobs import Job

prompt_text = Job.payload["prompt"].as_string()
negative_text = Job.payload[("params", "negative_prompt")].as_string()
width_value = Job.payload[("params", "width")].as_integer()
height_value = Job.payload[("params", "height")].as_integer()
rating_value = Job.result["rating"].as_integer()
favorite_flag = Job.result["is_favorite"].as_boolean()
image_bytes = Job.result["bytes"].as_integer()


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _month_before(moment: datetime) -> datetime:
    """The same day and time a calendar month earlier, or that month's last day when it is
    shorter (31 March -> 28/29 February)."""
    year, month = (moment.year, moment.month - 1) if moment.month > 1 else (moment.year - 1, 12)
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def since(date_filter: str, now: datetime) -> datetime | None:
    """The screen's date presets: `today` from 00:00 UTC, `week` the last 7 days, `month` the
    last calendar month; `all` no bound."""
    if date_filter == "today":
        return datetime.combine(now.date(), time.min, UTC)
    if date_filter == "week":
        return now - timedelta(days=7)
    if date_filter == "month":
        return _month_before(now)
    return None


def conditions(query: HistoryQuery, now: datetime) -> list[ColumnElement[bool]]:
    """WHERE terms: every search word in the prompt or the negative prompt (case-insensitive
    for ASCII letters on both databases), rating at least `min_rating` (unrated counts as 0),
    exact width/height, created within the date preset and `[start_date, end_date)`."""
    where: list[ColumnElement[bool]] = [Job.surface == "lora", Job.kind == GENERATE, Job.status == "succeeded"]
    if query.words:
        # lower() on both sides: the same function folds the text and the words
        text = func.lower(func.coalesce(prompt_text, "") + "\n" + func.coalesce(negative_text, ""))
        where += [text.like(func.lower(_like(word)), escape="\\") for word in query.words]
    if query.min_rating:
        where.append(rating_value >= query.min_rating)
    if query.width is not None:
        where.append(width_value == query.width)
    if query.height is not None:
        where.append(height_value == query.height)
    start = since(query.date_filter, now)
    if query.start_date is not None:
        start = max(start, query.start_date) if start else query.start_date
    if start is not None:
        where.append(Job.created_at >= start)
    if query.end_date is not None:
        where.append(Job.created_at < query.end_date)
    return where


def order(sort: str) -> list[Any]:
    """`created_at` (or `created_at_desc`) newest first, `created_at_asc` oldest first,
    `prompt` A to Z (case-insensitive), `rating` best first (unrated as 0); ties newest first,
    then by id."""
    newest = [Job.created_at.desc(), Job.id.desc()]
    if sort == "created_at_asc":
        return [Job.created_at.asc(), Job.id.asc()]
    if sort == "prompt":
        return [func.lower(func.coalesce(prompt_text, "")).asc(), *newest]
    if sort == "rating":
        return [func.coalesce(rating_value, 0).desc(), *newest]
    return newest


async def results(
    session: AsyncSession, query: HistoryQuery, limit: int, offset: int, now: datetime | None = None
) -> list[Job]:
    stmt = (
        select(Job)
        .where(*conditions(query, now or datetime.now(UTC)))
        .order_by(*order(query.sort))
        .limit(limit)
        .offset(offset)
    )
    return list((await session.scalars(stmt)).all())


def _summary(count: int, avg_rating: float | None, favorites: int | None, size: int | None) -> dict[str, Any]:
    """Every field a number (the screen checks Number.isFinite)."""
    return {
        "total_results": count,
        "avg_rating": round(float(avg_rating), 2) if avg_rating is not None else 0,
        "total_favorites": favorites or 0,
        "total_size": int(size or 0),
    }


async def summary(session: AsyncSession, query: HistoryQuery, now: datetime | None = None) -> dict[str, Any]:
    """The screen's summary of every result the filters match: `total_results`, `avg_rating`
    (of the rated ones), `total_favorites`, `total_size` (bytes of the stored full-size images,
    recorded per generation as `bytes`)."""
    favorites = func.count().filter(favorite_flag.is_(True))
    stmt = select(func.count(), func.avg(rating_value), favorites, func.sum(image_bytes))
    row = (await session.execute(stmt.where(*conditions(query, now or datetime.now(UTC))))).one()
    return _summary(*row)
