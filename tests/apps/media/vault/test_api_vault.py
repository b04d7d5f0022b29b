"""Vault listing (search, filter, sort, pages in SQL), deletion, and isolation between users."""

from __future__ import annotations

from datetime import timedelta

from kiln.apps.media.models import MediaItem
from kiln.core.db import utcnow
from tests.apps.media.mediakit import add_media, photo, register, second_client, settings, upload, wait_status  # noqa: F401


async def test_search_filter_sort_and_pages(app, client):
    user = await register(client, "ann@example.com")
    kernel = app.state.kernel
    now = utcnow()
    for n, (name, status) in enumerate(
        [("Beach_1.jpg", "READY"), ("beach-2.png", "FAILED"), ("forest.jpg", "READY"), ("100%_done.jpg", "READY")]
    ):
        await add_media(
            kernel,
            user["id"],
            filename=name,
            status=status,
            created_at=now - timedelta(minutes=10 - n),
            confidence=0.42,
        )
    page = (await client.get("/api/vault")).json()
    assert page["total"] == 4 and page["total_pages"] == 1 and page["page_size"] == 20
    assert [i["filename"] for i in page["items"]] == ["100%_done.jpg", "forest.jpg", "beach-2.png", "Beach_1.jpg"]
    assert page["items"][0]["confidence"] == 42.0
    assert set(page["items"][0]) >= {
        "id",
        "filename",
        "status",
        "timestamp",
        "metadata",
        "assigned_worker",
        "image_url",
        "technical_metadata",
        "updated_at",
        "lat",
        "lng",
        "altitude",
        "address",
    }
    search = (await client.get("/api/vault", params={"search": "BEACH"})).json()
    assert search["total"] == 2
    # LIKE wildcards in the search text are literal characters.
    assert [i["filename"] for i in (await client.get("/api/vault", params={"search": "%"})).json()["items"]] == [
        "100%_done.jpg"
    ]
    failed = (await client.get("/api/vault", params={"status": "FAILED"})).json()
    assert [i["filename"] for i in failed["items"]] == ["beach-2.png"]
    by_name = (
        await client.get("/api/vault", params={"order_by": "filename", "direction": "asc", "page": 2, "page_size": 3})
    ).json()
    assert by_name["total"] == 4 and by_name["total_pages"] == 2 and len(by_name["items"]) == 1
    for bad in ({"order_by": "size"}, {"status": "DONE"}, {"direction": "up"}, {"page": 0}, {"page_size": 101}):
        assert (await client.get("/api/vault", params=bad)).status_code == 422, bad


async def test_delete_one_and_all_remove_rows_and_files(app, client):
    await register(client, "ann@example.com")
    kernel = app.state.kernel
    body = (
        await upload(client, ("a.jpg", photo(), "image/jpeg"), ("b.jpg", photo(color=(9, 9, 9)), "image/jpeg"))
    ).json()
    first, second = body["media_ids"]
    item = await wait_status(client, first, {"READY"})
    await wait_status(client, second, {"READY"})
    user_id = (await client.get("/api/auth/me")).json()["id"]
    assert await kernel.blobs.exists(f"media/{user_id}/{first}/original")
    async with kernel.db.session() as session:
        thumbnail = (await session.get(MediaItem, first)).thumbnail_key
    # Each processing attempt has its own thumbnail key (a superseded attempt deletes only its own).
    assert thumbnail.startswith(f"media/{user_id}/{first}/thumbnail-") and await kernel.blobs.exists(thumbnail)

    assert (await client.delete("/api/vault/not-a-uuid")).status_code == 422
    gone = await client.delete(f"/api/vault/{first}")
    assert gone.json() == {"detail": "Media deleted successfully"}
    assert not await kernel.blobs.exists(f"media/{user_id}/{first}/original")
    assert (await client.get(item["image_url"])).status_code == 404
    assert (await client.get(f"/api/map/{first}/logs")).status_code == 404
    again = await client.delete(f"/api/vault/{first}")
    assert again.status_code == 404
    assert again.json() == {"detail": "Media not found or you don't have permission to delete it"}

    assert (await client.delete("/api/vault/all")).json() == {
        "detail": "All media deleted successfully",
        "deleted_count": 1,
    }
    assert not await kernel.blobs.exists(f"media/{user_id}/{second}/original")
    assert (await client.delete("/api/vault/all")).json() == {"detail": "No media found to delete", "deleted_count": 0}


async def test_one_user_never_sees_maps_or_deletes_anothers_media(app, client):
    await register(client, "ann@example.com")
    (ann_media,) = (await upload(client, ("ann.jpg", photo(gps=(47.5, 19.04, 100.0)), "image/jpeg"))).json()[
        "media_ids"
    ]
    ann_item = await wait_status(client, ann_media, {"READY"})
    async with second_client(app) as bob:
        await register(bob, "bob@example.com")
        # Same bytes for Bob are not a duplicate: dedupe is per user.
        same = await upload(bob, ("same.jpg", photo(gps=(47.5, 19.04, 100.0)), "image/jpeg"))
        assert same.status_code == 201
        (bob_media,) = same.json()["media_ids"]
        assert [i["id"] for i in (await bob.get("/api/vault")).json()["items"]] == [bob_media]
        assert [i["id"] for i in (await bob.get("/api/upload/recents")).json()["items"]] == [bob_media]
        await wait_status(bob, bob_media, {"READY"})
        assert [p["id"] for p in (await bob.get("/api/map")).json()["items"]] == [bob_media]
        stats = (
            await bob.get("/api/map/stats", params={"min_lat": 47, "max_lat": 48, "min_lng": 19, "max_lng": 20})
        ).json()
        assert stats["total"] == 0  # nothing with trash for Bob; Ann's media do not leak in
        assert (await bob.get(f"/api/map/{ann_media}/logs")).status_code == 404
        assert (await bob.get(ann_item["image_url"])).status_code == 404
        assert (await bob.get(ann_item["thumbnail_url"])).status_code == 404
        assert (await bob.delete(f"/api/vault/{ann_media}")).status_code == 404
        assert (await bob.post("/api/dashboard/ai-workers/dispatch", json={"media_id": ann_media})).status_code == 404
        assert (await bob.delete("/api/vault/all")).json()["deleted_count"] == 1
    assert [i["id"] for i in (await client.get("/api/vault")).json()["items"]] == [ann_media]
