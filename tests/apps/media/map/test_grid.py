"""The pre-aggregated map grid: both answer paths agree with each other and with a Python oracle
on random data; every path in and out of READY keeps the sums equal to a rebuild from rows;
the unique (user_id, sha256) index turns a lost upload race into the 409 duplicate answer."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select

from kiln.apps.media.map import grid
from kiln.apps.media.map import service as map_service
from kiln.apps.media.models import READY, UPLOADED, MediaDetection, MediaGridCell, MediaGridLabel, MediaGridMember
from kiln.apps.media.processing.status import transition
from kiln.apps.media.vault import service
from kiln.core.db import new_id
from tests.apps.media.mediakit import photo, register, settings, upload  # noqa: F401  (fixture)

LABELS = ("glass", "Trash", "metal", "paper", "plastic")
RESOLUTIONS = (0.005, 0.01, 0.015, 0.05, 0.1, 0.25, 0.5, 1.0, 0.003, 0.0123, 0.02, 0.3)


def _coord(rng: random.Random, lo: float) -> float:
    kind = rng.random()
    if kind < 0.25:  # exactly on a 0.005° edge (decimal, so 19.9-style float artefacts occur)
        return round(lo + rng.randrange(0, 60) * 0.005, 3)
    if kind < 0.35:  # a hair either side of an edge
        return round(lo + rng.randrange(0, 60) * 0.005, 3) + rng.choice((-1e-10, 1e-10, -3e-9, 4e-9))
    return lo + rng.uniform(0, 0.3)


async def _fill(kernel: Any, user_id: str, rng: random.Random, n: int) -> list[dict[str, Any]]:
    """Random media rows (mixed statuses, trash flags, missing GPS, detections), south-west and
    north-east of the equator/meridian; returns what was written."""
    rows = []
    async with kernel.db.session() as session:
        for _ in range(n):
            lat0, lng0 = rng.choice(((47.0, 19.0), (-34.1, -70.8)))
            row = {
                "id": new_id(),
                "status": READY if rng.random() < 0.85 else rng.choice(("PROCESSING", "FAILED")),
                "lat": _coord(rng, lat0) if rng.random() > 0.05 else None,
                "lng": _coord(rng, lng0),
                "has_trash": rng.random() < 0.8,
                "confidence": rng.choice((None, round(rng.uniform(0.3, 0.99), 4), rng.random())),
                "labels": [rng.choice(LABELS) for _ in range(rng.choice((0, 1, 1, 2, 3)))],
            }
            rows.append(row)
            await _insert(session, user_id, row)
        await session.commit()
        for start in range(0, n, 100):
            await grid.sync(session, [r["id"] for r in rows[start : start + 100]])
        await session.commit()
    return rows


async def _insert(session: Any, user_id: str, row: dict[str, Any]) -> None:
    from kiln.apps.media.models import MediaItem

    session.add(
        MediaItem(
            id=row["id"],
            user_id=user_id,
            status=row["status"],
            filename="x.jpg",
            blob_key=f"media/{user_id}/{row['id']}/original",
            lat=row["lat"],
            lng=row["lng"],
            has_trash=row["has_trash"],
            confidence=row["confidence"],
            attempts=0,
        )
    )
    await session.flush()
    for label in row["labels"]:
        session.add(
            MediaDetection(
                media_id=row["id"], label=label, confidence=0.5, bbox={"x": 0, "y": 0, "w": 1, "h": 1}, detector="test"
            )
        )


def _oracle(rows: list[dict[str, Any]], bbox: map_service.BBox, resolution: float) -> list[dict[str, Any]]:
    """The row-level algorithm in plain Python."""
    rn = grid.resolution_nano(resolution)
    cells: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    labels: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if not grid.contributes(r["status"], r["has_trash"], r["lat"], r["lng"]):
            continue
        if not (bbox.min_lat <= r["lat"] <= bbox.max_lat and bbox.min_lng <= r["lng"] <= bbox.max_lng):
            continue
        key = (grid.nano(r["lat"]) // rn, grid.nano(r["lng"]) // rn)
        cells[key][0] += 1
        cells[key][1] += grid.micro(r["confidence"])
        for label in r["labels"]:
            labels[key][label] += 1
    return map_service._shape((dict(cells), labels), resolution, rn)


def _random_bbox(rng: random.Random) -> map_service.BBox:
    lat0, lng0 = rng.choice(((47.0, 19.0), (-34.1, -70.8)))
    a, b = sorted(_coord(rng, lat0 - 0.02) for _ in range(2))
    c, d = sorted(_coord(rng, lng0 - 0.02) for _ in range(2))
    if rng.random() < 0.2:  # the whole region
        a, b, c, d = lat0 - 0.01, lat0 + 0.4, lng0 - 0.01, lng0 + 0.4
    return map_service.BBox(a, b + rng.choice((0, 0.05, 0.2)), c, d + rng.choice((0, 0.05, 0.2)))


async def test_grid_path_equals_row_path_and_oracle_on_random_data(app, client):
    user = await register(client, "ann@example.com")
    kernel = app.state.kernel
    rng = random.Random(20240501)
    rows = await _fill(kernel, user["id"], rng, 700)
    from_grid = nonempty = 0
    async with kernel.db.session() as session:
        for trial in range(60):
            bbox = _random_bbox(rng)
            resolution = RESOLUTIONS[trial % len(RESOLUTIONS)]
            rn = grid.resolution_nano(resolution)
            expected = _oracle(rows, bbox, resolution)
            by_rows = map_service._shape(await map_service._from_rows(session, user["id"], bbox, rn), resolution, rn)
            assert by_rows == expected, (trial, bbox, resolution)
            if rn % grid.FINE_NANO == 0:
                acc = await map_service._from_grid(session, user["id"], bbox, rn // grid.FINE_NANO, rn)
                if acc is not None:
                    from_grid += 1
                    assert map_service._shape(acc, resolution, rn) == expected, (trial, bbox, resolution)
            assert await map_service.grid_stats(session, user["id"], bbox, resolution) == expected
            nonempty += bool(expected)
    assert from_grid >= 20 and nonempty >= 30  # the comparison really exercised both paths


async def _snapshot(kernel: Any, user_id: str) -> tuple[set[Any], set[Any], set[Any]]:
    async with kernel.db.session() as session:
        cells = {
            tuple(r)
            for r in await session.execute(
                select(
                    MediaGridCell.level,
                    MediaGridCell.lat_idx,
                    MediaGridCell.lng_idx,
                    MediaGridCell.count,
                    MediaGridCell.confidence_sum,
                ).where(MediaGridCell.user_id == user_id)
            )
        }
        labels = {
            tuple(r)
            for r in await session.execute(
                select(
                    MediaGridLabel.level,
                    MediaGridLabel.lat_idx,
                    MediaGridLabel.lng_idx,
                    MediaGridLabel.label,
                    MediaGridLabel.count,
                ).where(MediaGridLabel.user_id == user_id)
            )
        }
        members = {
            (m.media_id, m.lat_idx, m.lng_idx, m.confidence, tuple(sorted(m.labels.items())))
            for m in await session.scalars(select(MediaGridMember).where(MediaGridMember.user_id == user_id))
        }
    return cells, labels, members


async def _assert_equals_rebuild(kernel: Any, user_id: str) -> tuple[set[Any], set[Any], set[Any]]:
    incremental = await _snapshot(kernel, user_id)
    async with kernel.db.session() as session:
        before = await grid.version(session, user_id)
        await grid.rebuild(session, user_id)
        await session.commit()
        assert await grid.version(session, user_id) > before
    rebuilt = await _snapshot(kernel, user_id)
    assert incremental == rebuilt
    assert all(c[3] > 0 for c in rebuilt[0]) and all(label[4] > 0 for label in rebuilt[1])  # no zero rows left
    return rebuilt


async def test_every_way_in_and_out_of_ready_keeps_the_sums_exact(app, client):
    from kiln.apps.media.models import MediaItem

    user = await register(client, "ann@example.com")
    kernel = app.state.kernel
    rng = random.Random(7)
    rows = await _fill(kernel, user["id"], rng, 200)
    cells, _, members = await _assert_equals_rebuild(kernel, user["id"])
    assert len(members) == sum(grid.contributes(r["status"], r["has_trash"], r["lat"], r["lng"]) for r in rows)
    assert {c[0] for c in cells} == {0, 1}

    ready = [r for r in rows if grid.contributes(r["status"], r["has_trash"], r["lat"], r["lng"])]
    async with kernel.db.session() as session:
        # dispatch: detections deleted first, then READY -> UPLOADED without `expect`
        for r in ready[:20]:
            item = await session.get(MediaItem, r["id"])
            await session.execute(delete(MediaDetection).where(MediaDetection.media_id == r["id"]))
            assert await transition(session, item, UPLOADED, values={"has_trash": False, "confidence": None})
        await session.commit()
    await _assert_equals_rebuild(kernel, user["id"])

    async with kernel.db.session() as session:
        # the worker: new detections, then -> READY (expect excludes READY), as jobs.py does
        for r in ready[:10]:
            item = await session.get(MediaItem, r["id"])
            await transition(session, item, "PROCESSING", expect=(UPLOADED,))
            session.add(
                MediaDetection(
                    media_id=r["id"],
                    label="glass",
                    confidence=0.9,
                    bbox={"x": 0, "y": 0, "w": 1, "h": 1},
                    detector="test",
                )
            )
            assert await transition(
                session, item, READY, expect=("PROCESSING",), values={"has_trash": True, "confidence": 0.9}
            )
        # a READY transition that is refused (not in `expect`) changes nothing
        item = await session.get(MediaItem, ready[30]["id"])
        assert await transition(session, item, READY, expect=("PROCESSING",)) is None
        await session.commit()
    _, labels, members = await _assert_equals_rebuild(kernel, user["id"])
    assert {m[0] for m in members} >= {r["id"] for r in ready[:10]}
    assert not {m[0] for m in members} & {r["id"] for r in ready[10:20]}

    # delete one, then everything
    async with kernel.db.session() as session:
        assert await service.delete_media(kernel, session, user["id"], ready[40]["id"]) == 1
    cells, labels, members = await _assert_equals_rebuild(kernel, user["id"])
    assert ready[40]["id"] not in {m[0] for m in members} and members
    async with kernel.db.session() as session:
        assert await service.delete_media(kernel, session, user["id"]) == len(rows) - 1
    assert await _snapshot(kernel, user["id"]) == (set(), set(), set())


async def test_backfill_sql_equals_python_keys_on_the_same_rows(app, client):
    """The migration's SQL (backfill_sql) and the incremental Python path key and sum alike."""
    user = await register(client, "ann@example.com")
    kernel = app.state.kernel
    await _fill(kernel, user["id"], random.Random(99), 300)
    await _assert_equals_rebuild(kernel, user["id"])


async def test_a_duplicate_is_stopped_by_the_unique_index_and_leaves_nothing(app, client):
    # No query looks for duplicates first: the unique (user_id, sha256) index stops the second
    # copy at its UPLOADED write, which also covers two uploads racing each other.
    await register(client, "ann@example.com")
    body = photo(color=(10, 200, 30))
    first = await upload(client, ("a.jpg", body, "image/jpeg"))
    assert first.status_code == 201
    (first_id,) = first.json()["media_ids"]
    second = await upload(client, ("b.jpg", body, "image/jpeg"))
    assert second.status_code == 409, second.text
    assert second.json()["detail"]["rejected"][0]["detail"] == f"Duplicate of media {first_id}"
    kernel = app.state.kernel
    _jobs, total = await kernel.jobs.list(kind="media.process")
    assert total == 1  # the duplicate's job was rolled back with its UPLOADED write
    vault = (await client.get("/api/vault")).json()
    assert vault["total"] == 1 and vault["items"][0]["id"] == first_id
