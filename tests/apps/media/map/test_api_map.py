"""Map points and grid statistics (SQL aggregation, cache invalidation), and log timelines."""

from __future__ import annotations

import uuid

import pytest

from kiln.apps.media.map import grid
from tests.apps.media.mediakit import add_media as add_row
from tests.apps.media.mediakit import register, settings  # noqa: F401  (fixture)


async def add_media(kernel, user_id, **fields):
    """A row written straight to the database, entered into the map grid as a READY transition would."""
    media_id = await add_row(kernel, user_id, **fields)
    async with kernel.db.session() as session:
        await grid.sync(session, [media_id])
        await session.commit()
    return media_id


BOX = {"min_lat": 47.0, "max_lat": 48.0, "min_lng": 19.0, "max_lng": 20.0}


async def test_points_filters_and_pagination(app, client):
    user = await register(client, "ann@example.com")
    k = app.state.kernel
    inside = await add_media(
        k, user["id"], lat=47.5, lng=19.5, has_trash=True, confidence=0.9, detections=[("plastic", 0.9), ("glass", 0.6)]
    )
    low = await add_media(k, user["id"], lat=47.6, lng=19.6, has_trash=True, confidence=0.3)
    await add_media(k, user["id"], lat=10.0, lng=10.0)
    await add_media(k, user["id"])  # no GPS: never on the map
    assert (await client.get("/api/map")).json()["total"] == 3
    boxed = (await client.get("/api/map", params=BOX)).json()
    assert {p["id"] for p in boxed["items"]} == {inside, low}
    strong = (await client.get("/api/map", params={**BOX, "min_confidence": 50})).json()
    (point,) = strong["items"]
    assert point["id"] == inside and point["confidence"] == 90.0
    assert [d["label"] for d in point["detections"]] == ["plastic", "glass"]
    assert point["detections"][0]["confidence"] == 0.9
    assert (await client.get("/api/map", params={"has_trash": False})).json()["total"] == 1
    page = (await client.get("/api/map", params={"limit": 1, "offset": 1})).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    partial = await client.get("/api/map", params={"min_lat": 47})
    assert partial.status_code == 422 and "all four" in partial.json()["detail"]
    inverted = await client.get("/api/map", params={**BOX, "min_lat": 49})
    assert inverted.status_code == 400
    assert inverted.json() == {"detail": "Invalid bounding box: min values must be <= max values."}
    assert (await client.get("/api/map", params={"min_confidence": 101})).status_code == 422


async def test_grid_stats_are_aggregated_in_sql(app, client):
    user = await register(client, "ann@example.com")
    k = app.state.kernel
    # One cell (resolution 0.01) with two trash photos: mean 0.9 and 0.8 -> 85 %.
    await add_media(
        k,
        user["id"],
        lat=47.501,
        lng=19.041,
        has_trash=True,
        confidence=0.9,
        detections=[("plastic", 0.9), ("metal", 0.7)],
    )
    await add_media(
        k,
        user["id"],
        lat=47.509,
        lng=19.049,
        has_trash=True,
        confidence=0.8,
        detections=[("metal", 0.8), ("plastic", 0.6), ("glass", 0.5), ("glass", 0.5)],
    )
    await add_media(k, user["id"], lat=47.505, lng=19.045, has_trash=False, confidence=None)  # not counted
    await add_media(k, user["id"], lat=47.7, lng=19.9, has_trash=True, confidence=0.5)  # no detections
    body = (await client.get("/api/map/stats", params={**BOX, "resolution": 0.01})).json()
    assert body["total"] == 2 and body["density_unit"] == "per_km2"
    first, second = body["items"]
    assert (first["lat"], first["lng"], first["count"], first["confidence"]) == (47.5, 19.04, 2, 85.0)
    # plastic 2, metal 2, glass 2: a three-way tie goes to the alphabetically first label.
    assert first["label"] == "glass"
    area = (0.01 * 111.32) ** 2 * 0.6755  # cos(47.505°)
    assert first["density"] == pytest.approx(2 / area, rel=0.01)
    assert (second["lat"], second["lng"], second["count"], second["label"]) == (47.7, 19.9, 1, None)
    assert (await client.get("/api/map/stats", params={"min_lat": 1})).status_code == 422
    bad = await client.get("/api/map/stats", params={**BOX, "max_lng": 18})
    assert bad.status_code == 400


async def test_negative_coordinates_floor_to_the_south_west_corner(app, client):
    user = await register(client, "ann@example.com")
    await add_media(
        app.state.kernel,
        user["id"],
        lat=-33.8651,
        lng=-70.6501,
        has_trash=True,
        confidence=0.7,
        detections=[("paper", 0.7)],
    )
    box = {"min_lat": -34, "max_lat": -33, "min_lng": -71, "max_lng": -70, "resolution": 0.1}
    (cell,) = (await client.get("/api/map/stats", params=box)).json()["items"]
    assert (cell["lat"], cell["lng"], cell["label"]) == (-33.9, -70.7, "paper")


async def test_stats_cache_is_invalidated_when_the_users_media_change(app, client):
    user = await register(client, "ann@example.com")
    k = app.state.kernel
    params = {**BOX, "resolution": 0.5}
    await add_media(k, user["id"], lat=47.2, lng=19.2, has_trash=True, confidence=0.5)
    assert (await client.get("/api/map/stats", params=params)).json()["items"][0]["count"] == 1
    assert (await client.get("/api/map/stats", params=params)).json()["items"][0]["count"] == 1  # cached
    second = await add_media(k, user["id"], lat=47.3, lng=19.3, has_trash=True, confidence=0.5)
    assert (await client.get("/api/map/stats", params=params)).json()["items"][0]["count"] == 2
    assert (await client.delete(f"/api/vault/{second}")).status_code == 200
    assert (await client.get("/api/map/stats", params=params)).json()["items"][0]["count"] == 1
    assert (await client.delete("/api/vault/all")).status_code == 200
    assert (await client.get("/api/map/stats", params=params)).json()["items"] == []


async def test_a_cell_edge_point_belongs_to_the_cell_it_starts(app, client):
    """19.9 is 19.899999999999998 as a double: it still opens cell 19.9 at 0.01 and at 0.1."""
    user = await register(client, "ann@example.com")
    await add_media(app.state.kernel, user["id"], lat=47.9, lng=19.9, has_trash=True, confidence=0.4)
    for resolution, key in ((0.01, (47.9, 19.9)), (0.1, (47.9, 19.9)), (0.03, (47.88, 19.89))):
        (cell,) = (await client.get("/api/map/stats", params={**BOX, "resolution": resolution})).json()["items"]
        assert (cell["lat"], cell["lng"]) == key, resolution


async def test_logs_of_unknown_or_malformed_ids(client):
    await register(client, "ann@example.com")
    missing = await client.get(f"/api/map/{uuid.uuid4()}/logs")
    assert missing.status_code == 404 and missing.json() == {"detail": "Media not found"}
    assert (await client.get("/api/map/xyz/logs")).status_code == 422
