"""The history screen's `GET /generation/results`: every filter and sort the reference's Vue
screen sends (`useGenerationHistory` / `historyService.buildHistoryQuery`), done in SQL over
every result, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import insert

from kiln.apps.lora.generation.history import since
from kiln.core.jobs import Job

BASE = "/api/v1/generation/results"
NOW = datetime.now(UTC)


def _job(
    prompt: str,
    *,
    age: timedelta = timedelta(0),
    negative: str | None = None,
    width: int = 512,
    height: int = 512,
    rating: int | None = None,
    favorite: bool = False,
    size: int = 100,
    status: str = "succeeded",
    kind: str = "lora.generate",
    created: datetime | None = None,
) -> dict:
    params = {
        "prompt": prompt,
        "width": width,
        "height": height,
        "steps": 20,
        "seed": 1,
        "negative_prompt": negative or "",
    }
    result = {"status": "completed", "images": ["k"], "bytes": size, "is_favorite": favorite, "rating": rating}
    at = created or NOW - age
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "surface": "lora",
        "status": status,
        "progress": 1.0,
        "attempts": 1,
        "max_attempts": 1,
        "payload": {"prompt": prompt, "params": params},
        "result": result,
        "created_at": at,
        "updated_at": at,
        "finished_at": at,
    }


async def _seed(app, rows: list[dict]) -> list[str]:
    async with app.state.kernel.db.session() as session:
        await session.execute(insert(Job), rows)
        await session.commit()
    return [row["id"] for row in rows]


async def _page(client, **params) -> dict:
    response = await client.get(BASE, params={"page": 1, "page_size": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()


async def _ids(client, **params) -> list[str]:
    return [r["id"] for r in (await _page(client, **params))["results"]]


async def test_sorts_by_prompt_and_rating_with_ties_newest_first(client, app) -> None:
    rows = [
        _job("Zebra crossing", age=timedelta(hours=1), rating=2),
        _job("apple tree", age=timedelta(hours=2), rating=5),
        _job("Mango", age=timedelta(hours=3)),
        _job("apple tree", age=timedelta(hours=4), rating=5),
        _job("banana", age=timedelta(hours=5), rating=0),
    ]
    z, a1, m, a2, b = await _seed(app, rows)
    assert await _ids(client, sort="prompt") == [a1, a2, b, m, z]
    # unrated counts as 0 (as the reference's screen sorted); ties newest first
    assert await _ids(client, sort="rating") == [a1, a2, z, m, b]
    assert await _ids(client, sort="created_at") == [z, a1, m, a2, b]
    assert await _ids(client, sort="created_at_desc") == [z, a1, m, a2, b]
    assert await _ids(client, sort="created_at_asc") == [b, a2, m, a1, z]
    # the contract's limit/offset form takes the same sorts and stays a plain list
    listed = await client.get(BASE, params={"sort": "prompt", "limit": 2, "offset": 1})
    assert [r["id"] for r in listed.json()] == [a2, b]


async def test_equal_sort_keys_page_without_overlap_or_gap(client, app) -> None:
    same = NOW - timedelta(minutes=5)
    ids = await _seed(app, [_job("same prompt", created=same, rating=3) for _ in range(7)])
    for sort in ("created_at", "created_at_asc", "prompt", "rating"):
        seen = []
        for number in range(1, 5):
            page = await _page(client, sort=sort, page=number, page_size=2)
            seen += [r["id"] for r in page["results"]]
            assert page["total"] == 7 and page["pages"] == 4 and page["has_more"] is (number < 4)
        assert sorted(seen) == sorted(ids) and len(seen) == 7, sort


async def test_date_presets_and_explicit_range(client, app) -> None:
    ages = {"now": timedelta(seconds=5), "3d": timedelta(days=3), "20d": timedelta(days=20), "45d": timedelta(days=45)}
    ids = dict(zip(ages, await _seed(app, [_job(name, age=age) for name, age in ages.items()]), strict=True))
    midnight = datetime.combine(NOW.date(), time.min, UTC)
    assert set(await _ids(client, date_filter="today")) == {ids[k] for k, age in ages.items() if NOW - age >= midnight}
    assert set(await _ids(client, date_filter="week")) == {ids["now"], ids["3d"]}
    assert set(await _ids(client, date_filter="month")) == {ids["now"], ids["3d"], ids["20d"]}
    assert len(await _ids(client, date_filter="all")) == 4
    # a date alone: its whole day (end_date included); date-times are instants (naive = UTC)
    day = (NOW - ages["3d"]).date().isoformat()
    assert await _ids(client, start_date=day, end_date=day) == [ids["3d"]]
    start = (NOW - timedelta(days=21)).replace(tzinfo=None).isoformat()
    end = (NOW - timedelta(days=1)).isoformat()
    assert await _ids(client, start_date=start, end_date=end) == [ids["3d"], ids["20d"]]
    assert await _ids(client, end_date=(NOW - timedelta(days=10)).date().isoformat()) == [ids["20d"], ids["45d"]]
    # a preset and a range both apply
    assert await _ids(client, date_filter="week", end_date=end) == [ids["3d"]]
    # an explicit end instant is itself included
    exact = (NOW - ages["20d"]).isoformat()
    assert await _ids(client, start_date=exact, end_date=exact) == [ids["20d"]]


def test_month_preset_is_a_calendar_month() -> None:
    assert since("month", datetime(2026, 3, 31, 15, 0, tzinfo=UTC)) == datetime(2026, 2, 28, 15, 0, tzinfo=UTC)
    assert since("month", datetime(2026, 1, 15, tzinfo=UTC)) == datetime(2025, 12, 15, tzinfo=UTC)
    assert since("today", datetime(2026, 5, 2, 23, 59, tzinfo=UTC)) == datetime(2026, 5, 2, tzinfo=UTC)
    assert since("all", NOW) is None


async def test_dimension_rating_and_search_filters_with_stats_over_every_match(client, app) -> None:
    rows = [
        _job("A Red fox in snow", width=512, height=512, rating=5, favorite=True, size=10),
        _job("red kite", width=768, height=768, rating=3, size=20),
        _job("blue whale", negative="red, blurry", width=512, height=512, rating=4, size=40),
        _job("fox 100% orange", width=1024, height=1024, size=80),
        _job("fox 1000 orange", width=512, height=768, rating=1, favorite=True, size=160),
    ]
    fox, kite, whale, pct, thousand = await _seed(app, rows)
    assert set(await _ids(client, width=512, height=512)) == {fox, whale}
    assert set(await _ids(client, width=512)) == {fox, whale, thousand}
    assert await _ids(client, height=1024) == [pct]
    assert set(await _ids(client, min_rating=4)) == {fox, whale}
    assert await _ids(client, min_rating=5) == [fox]
    assert len(await _ids(client, min_rating=0)) == 5  # the screen's "all ratings"
    # every word, case-insensitive, in the prompt or the negative prompt
    assert set(await _ids(client, search="RED")) == {fox, kite, whale}
    assert await _ids(client, search="fox snow") == [fox]
    assert await _ids(client, search="blurry whale") == [whale]
    # LIKE wildcards in a word are plain characters
    assert await _ids(client, search="100%") == [pct]
    assert await _ids(client, search="fox_") == []
    page = await _page(client, search="fox", min_rating=1, page_size=1)
    assert page["stats"] == {"total_results": 2, "avg_rating": 3.0, "total_favorites": 2, "total_size": 170}
    assert (page["total"], page["pages"], page["has_more"], len(page["results"])) == (2, 2, True, 1)
    empty = await _page(client, search="nothing-like-this")
    assert empty["stats"] == {"total_results": 0, "avg_rating": 0, "total_favorites": 0, "total_size": 0}
    assert (empty["results"], empty["total"], empty["pages"], empty["has_more"]) == ([], 0, 0, False)
    assert (await _page(client, page=9, page_size=2))["results"] == []


async def test_only_succeeded_generations_are_results(client, app) -> None:
    ok, *_ = await _seed(
        app,
        [_job("cat"), _job("cat", status="failed"), _job("cat", status="running"), _job("cat", kind="lora.deliver")],
    )
    assert await _ids(client, search="cat") == [ok]
    assert (await _page(client))["stats"]["total_results"] == 1


async def test_filters_reach_past_the_newest_two_thousand(client, app) -> None:
    # The old screen filtered the newest 2,000 results in Python: an older match was never found.
    old = _job("a lighthouse at dusk", age=timedelta(days=30), rating=5, size=7)
    await _seed(app, [old] + [_job(f"filler {i}", age=timedelta(minutes=i), rating=1) for i in range(2100)])
    page = await _page(client, search="lighthouse")
    assert [r["id"] for r in page["results"]] == [old["id"]] and page["stats"]["total_size"] == 7
    assert [r["id"] for r in (await client.get(BASE, params={"min_rating": 5})).json()] == [old["id"]]
    everything = await _page(client, page_size=10)
    assert everything["total"] == 2101 and everything["pages"] == 211


BAD = [
    {"sort": "newest"},
    {"sort": ""},
    {"date_filter": "year"},
    {"date_filter": ""},
    {"width": 0},
    {"height": 100_000},
    {"width": "wide"},
    {"min_rating": 6},
    {"min_rating": -1},
    {"start_date": "yesterday"},
    {"end_date": "2026-13-01"},
    {"start_date": "2026-02-30"},
    {"end_date": "9999-12-31"},
    {"start_date": "2026-01-01T00:00:00+99:00"},
    {"start_date": "2" * 41},
    {"start_date": "2026-03-02", "end_date": "2026-03-01"},
    {"page_size": 101},
    {"page": 0},
    {"limit": 0},
    {"search": "x" * 201},
    {"offset": -1},
]


async def test_bad_values_are_422_in_the_envelope(client) -> None:
    for params in BAD:
        for query in (params, {"page": 1, "page_size": 10, **params}):
            response = await client.get(BASE, params=query)
            assert response.status_code == 422, (query, response.text)
            body = response.json()
            assert body["type"] == "about:blank" and body["status"] == 422 and body["title"].startswith("Invalid")
