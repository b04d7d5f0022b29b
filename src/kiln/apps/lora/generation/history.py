"""The history screen's query: succeeded generations filtered, sorted and summarised in SQL.

A result is a succeeded `lora.generate` job. What the screen filters, sorts and sums on is in
`lora_generation_results` (one row per such job, kept in step with the job's JSON by database
triggers, see `models.GenerationResult`): narrow indexed columns, so the stats of every match
and the prompt and rating sorts no longer read each job's JSON documents. The page's rows come
from an index of that table and are joined to their jobs (the response is built from the job);
every order ends on the job id, so pages never overlap or skip a result whose sort key ties.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.generation.schemas import HistoryQuery
from kiln.apps.lora.models import GenerationResult as Row
from kiln.core.jobs import Job


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
    where: list[ColumnElement[bool]] = []
    if query.words:
        # lower() on both sides: the function that folded the stored text folds the words
        where += [Row.search_text.like(func.lower(_like(word)), escape="\\") for word in query.words]
    if query.min_rating:
        where.append(Row.rating >= query.min_rating)
    if query.width is not None:
        where.append(Row.width == query.width)
    if query.height is not None:
        where.append(Row.height == query.height)
    start = since(query.date_filter, now)
    if query.start_date is not None:
        start = max(start, query.start_date) if start else query.start_date
    if start is not None:
        where.append(Row.created_at >= start)
    if query.end_date is not None:
        where.append(Row.created_at < query.end_date)
    return where


def order(sort: str) -> list[tuple[Any, bool]]:
    """(column, descending) pairs: `created_at` (or `created_at_desc`) newest first,
    `created_at_asc` oldest first, `prompt` A to Z (case-insensitive, on the prompt's first 200
    characters), `rating` best first (unrated as 0); ties newest first, then by id."""
    newest = [(Row.created_at, True), (Row.job_id, True)]
    if sort == "created_at_asc":
        return [(Row.created_at, False), (Row.job_id, False)]
    if sort == "prompt":
        return [(Row.prompt_key, False), *newest]
    if sort == "rating":
        return [(Row.sort_rating, True), *newest]
    return newest


def _ordered(columns: list[Any], descending: list[bool]) -> list[Any]:
    return [column.desc() if desc else column.asc() for column, desc in zip(columns, descending, strict=True)]


async def results(
    session: AsyncSession, query: HistoryQuery, limit: int, offset: int, now: datetime | None = None
) -> list[Job]:
    """The page's jobs. The page is chosen in `lora_generation_results` alone (out of an index
    of it) and only its rows are joined to `jobs`: a join before the OFFSET would fetch every
    skipped job too (PostgreSQL did, for page 100: 5,000 lookups)."""
    keys = order(query.sort)
    columns, descending = [column for column, _ in keys], [desc for _, desc in keys]
    page = (
        select(*columns)
        .where(*conditions(query, now or datetime.now(UTC)))
        .order_by(*_ordered(columns, descending))
        .limit(limit)
        .offset(offset)
        .subquery()
    )
    stmt = (
        select(Job)
        .join(page, page.c.job_id == Job.id)
        .order_by(*_ordered([page.c[column.key] for column in columns], descending))
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
    favorites = func.count().filter(Row.is_favorite.is_(True))
    stmt = select(func.count(), func.avg(Row.rating), favorites, func.sum(Row.bytes)).select_from(Row)
    row = (await session.execute(stmt.where(*conditions(query, now or datetime.now(UTC))))).one()
    return _summary(*row)
