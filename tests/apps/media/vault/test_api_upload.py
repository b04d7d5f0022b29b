"""Upload -> pipeline -> READY end to end, rejected files, files served with ranges, WebSocket."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import httpx
import pytest
from httpx_ws import aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from PIL import Image

from kiln.apps.media.config import MediaSettings, set_media_settings
from kiln.apps.media.vault.live import parse_since
from tests.apps.media.mediakit import photo, register, second_client, settings, upload, wait_status  # noqa: F401  (fixture)
from tests.fakes.detector import fake_detector  # noqa: F401  (fixture)

BUDAPEST = (47.4979, 19.0402, 120.0)


async def test_upload_runs_the_pipeline_to_ready(app, client):
    await register(client, "ann@example.com")
    data = photo(gps=BUDAPEST)
    response = await upload(client, ("street.jpg", data, "image/jpeg"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["message"] == "1 file uploaded successfully" and body["rejected"] == []
    (media_id,) = body["media_ids"]

    item = await wait_status(client, media_id, {"READY", "FAILED"})
    assert item["status"] == "READY", item
    assert item["metadata"]["width"] == 640 and item["metadata"]["size"] == len(data)
    assert len(item["metadata"]["sha256"]) == 64 and item["metadata"]["mime"] == "image/jpeg"
    assert item["lat"] == pytest.approx(47.4979, abs=1e-4) and item["lng"] == pytest.approx(19.0402, abs=1e-4)
    assert item["altitude"] == pytest.approx(120.0) and item["address"] == "Budapest, Hungary"
    assert item["technical_metadata"]["gps"]["address"] == "Budapest, Hungary"
    assert item["technical_metadata"]["make"] == "KilnCam"
    assert item["technical_metadata"]["detection"].startswith("skipped")  # no detector: said, not faked
    assert item["has_trash"] is False and item["confidence"] is None
    assert item["assigned_worker"] in app.state.kernel.settings.worker_names

    history = (await client.get(f"/api/map/{media_id}/logs")).json()["history"]
    assert [h["message"] for h in history] == [
        "Status changed to PENDING",
        "Status changed to UPLOADED",
        "Status changed to EXTRACTING",
        "Status changed to PROCESSING (Extracted EXIF and GPS data)",
        "Status changed to READY (detection skipped: no detector configured)",
    ]
    assert history[2]["worker_name"] == item["assigned_worker"]

    image = await client.get(item["image_url"])
    assert image.status_code == 200 and image.content == data and image.headers["content-type"] == "image/jpeg"
    part = await client.get(item["image_url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == data[:100]
    thumb = await client.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (400, 300)

    points = (await client.get("/api/map")).json()
    assert points["total"] == 1 and points["items"][0]["id"] == media_id


async def test_detector_results_are_stored_and_mapped(app, client, fake_detector):  # noqa: F811
    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, detector_url=fake_detector.url))
    await register(client, "ann@example.com")
    response = await upload(
        client,
        ("litter.jpg", photo(gps=BUDAPEST, red_box=True), "image/jpeg"),
        ("clean.jpg", photo(gps=(47.5, 19.05, 100.0), color=(10, 200, 10)), "image/jpeg"),
    )
    litter_id, clean_id = response.json()["media_ids"]
    litter = await wait_status(client, litter_id, {"READY", "FAILED"})
    clean = await wait_status(client, clean_id, {"READY", "FAILED"})
    assert litter["status"] == clean["status"] == "READY"
    assert litter["has_trash"] is True and 90 < litter["confidence"] <= 100  # percent at the API edge
    assert clean["has_trash"] is False and clean["confidence"] == 0.0

    points = (await client.get("/api/map", params={"has_trash": True})).json()
    assert [p["id"] for p in points["items"]] == [litter_id]
    (det,) = points["items"][0]["detections"]
    assert det["label"] == "plastic" and 0.9 < det["confidence"] <= 1.0  # 0..1 scale
    assert det["bbox"] == pytest.approx({"x": 0.25, "y": 0.25, "w": 0.25, "h": 0.25}, abs=0.01)
    assert det["detector"].startswith("http:")
    assert (await client.get("/api/map", params={"min_confidence": 50})).json()["total"] == 1


async def test_unavailable_detector_fails_after_bounded_retries(app, client, fake_detector):  # noqa: F811
    fake_detector.mode = "error"
    set_media_settings(
        app.state.kernel,
        MediaSettings(_env_file=None, detector_url=fake_detector.url, max_attempts=2, retry_seconds=0.05),
    )
    await register(client, "ann@example.com")
    (media_id,) = (await upload(client, ("a.jpg", photo(), "image/jpeg"))).json()["media_ids"]
    item = await wait_status(client, media_id, {"FAILED"}, timeout=30)
    assert item["assigned_worker"] is None
    messages = [h["message"] for h in (await client.get(f"/api/map/{media_id}/logs")).json()["history"]]
    assert any("retrying: detector answered 503" in m for m in messages)
    assert messages[-1].startswith("Status changed to FAILED (Processing failed: detector answered 503")


async def test_rejected_files_do_not_lose_accepted_ones(app, client):
    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, max_upload_bytes=200_000))
    await register(client, "ann@example.com")
    good = photo(fmt="PNG")
    response = await upload(
        client,
        ("ok.png", good, "image/png"),
        ("notes.txt", b"hello, not an image", "text/plain"),
        ("huge.bmp", b"BM" + bytes(300_000), "image/bmp"),
    )
    assert response.status_code == 201
    body = response.json()
    assert len(body["media_ids"]) == 1
    rejected = {r["filename"]: r for r in body["rejected"]}
    assert rejected["notes.txt"]["status"] == 415 and "not a supported image" in rejected["notes.txt"]["detail"]
    assert rejected["huge.bmp"]["status"] == 413
    dup = await upload(client, ("again.png", good, "image/png"))
    assert dup.status_code == 409
    assert dup.json()["detail"]["rejected"][0]["detail"] == f"Duplicate of media {body['media_ids'][0]}"
    only_bad = await upload(client, ("x.gif", b"GIF89a" + bytes(20), "image/gif"))
    assert only_bad.status_code == 415
    vault = (await client.get("/api/vault")).json()
    assert vault["total"] == 1 and vault["items"][0]["filename"] == "ok.png"
    assert (await client.post("/api/upload/files")).status_code == 422


async def test_an_image_whose_header_is_beyond_the_streamed_head_is_still_identified(app, client):
    # The probe reads the first bytes kept while the upload streamed (service.PROBE_HEAD_BYTES);
    # a 600 kB ICC profile pushes the JPEG frame header past them, so the stored file is read.
    await register(client, "ann@example.com")
    buf = io.BytesIO()
    Image.new("RGB", (320, 200), (90, 30, 10)).save(buf, "JPEG", icc_profile=bytes(range(256)) * 2400)
    response = await upload(client, ("icc.jpg", buf.getvalue(), "image/jpeg"))
    assert response.status_code == 201, response.text
    (media_id,) = response.json()["media_ids"]
    item = (await client.get("/api/vault")).json()["items"][0]
    assert item["id"] == media_id and (item["metadata"]["width"], item["metadata"]["height"]) == (320, 200)


async def test_recents_are_the_four_newest(client):
    await register(client, "ann@example.com")
    ids = []
    for n in range(5):
        ids += (await upload(client, (f"p{n}.jpg", photo(color=(n * 40, 10, 10)), "image/jpeg"))).json()["media_ids"]
    recents = (await client.get("/api/upload/recents")).json()
    assert recents["total"] == 4 and [i["id"] for i in recents["items"]] == ids[::-1][:4]
    assert set(recents["items"][0]) >= {"id", "filename", "status", "timestamp", "image_url", "metadata", "address"}


async def _next_json(ws, timeout: float = 20) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive_text(), timeout))


async def test_websocket_pushes_only_the_callers_updates(app, client):
    user = await register(client, "ann@example.com")
    token = client.cookies["access_token"]
    async with second_client(app) as other:
        await register(other, "bob@example.com")
        async with (
            ASGIWebSocketTransport(app=app) as transport,
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as ws_http,
        ):
            async with aconnect_ws("/api/upload/ws/updates", ws_http, params={"token": token}) as ws:
                await asyncio.sleep(0.1)  # subscribed before anything is published
                await upload(other, ("bob.jpg", photo(color=(1, 2, 3)), "image/jpeg"))
                (media_id,) = (await upload(client, ("ann.jpg", photo(), "image/jpeg"))).json()["media_ids"]
                seen = []
                while not seen or seen[-1]["status"] not in ("READY", "FAILED"):
                    seen.append(await _next_json(ws))
            assert {m["media_id"] for m in seen} == {media_id}
            assert [m["status"] for m in seen] == ["PENDING", "UPLOADED", "EXTRACTING", "PROCESSING", "READY"]
            assert all(m["type"] == "MEDIA_STATUS_UPDATE" for m in seen)
            assert seen[2]["worker"] and seen[1]["img_url"] == f"/api/media/{media_id}/image"
            assert user["id"]

            async with aconnect_ws("/api/upload/ws/updates", ws_http, params={"token": "bad"}) as ws:
                with pytest.raises(Exception) as closed:
                    await ws.receive_text()
            assert getattr(closed.value, "code", None) == 1008


async def test_websocket_since_replays_missed_updates_then_streams(app, client):
    await register(client, "ann@example.com")
    token = client.cookies["access_token"]
    async with second_client(app) as other:
        await register(other, "bob@example.com")
        await upload(other, ("bob.jpg", photo(color=(1, 2, 3)), "image/jpeg"))  # never replayed to ann
        before = (await client.get("/api/health")).json()["timestamp"]
        (missed_id,) = (await upload(client, ("missed.jpg", photo(), "image/jpeg"))).json()["media_ids"]
        await wait_status(client, missed_id, {"READY"})
        async with (
            ASGIWebSocketTransport(app=app) as transport,
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as ws_http,
        ):
            async with aconnect_ws("/api/upload/ws/updates", ws_http, params={"token": token, "since": before}) as ws:
                replayed = [await _next_json(ws) for _ in range(5)]
                assert [m["status"] for m in replayed] == ["PENDING", "UPLOADED", "EXTRACTING", "PROCESSING", "READY"]
                assert {m["media_id"] for m in replayed} == {missed_id} and all(m["replayed"] for m in replayed)
                assert replayed[1]["img_url"] == f"/api/media/{missed_id}/image" and replayed[2]["worker"]
                # Then live updates follow on the same socket, each once.
                (live_id,) = (await upload(client, ("live.jpg", photo(color=(90, 9, 9)), "image/jpeg"))).json()[
                    "media_ids"
                ]
                live = []
                while not live or live[-1]["status"] != "READY":
                    live.append(await _next_json(ws))
                assert [m["status"] for m in live] == ["PENDING", "UPLOADED", "EXTRACTING", "PROCESSING", "READY"]
                assert {m["media_id"] for m in live} == {live_id} and not any(m.get("replayed") for m in live)

            # A `since` after everything replays nothing; a bad one is refused with a clear close.
            later = (await client.get("/api/health")).json()["timestamp"]
            async with aconnect_ws("/api/upload/ws/updates", ws_http, params={"token": token, "since": later}) as ws:
                with pytest.raises(asyncio.TimeoutError):
                    await _next_json(ws, timeout=0.5)
            async with aconnect_ws(
                "/api/upload/ws/updates", ws_http, params={"token": token, "since": "yesterday"}
            ) as ws:
                with pytest.raises(Exception) as closed:
                    await ws.receive_text()
            assert getattr(closed.value, "code", None) == 1007

            # A token revoked by logout is refused on the socket too.
            await client.post("/api/auth/logout")
            async with aconnect_ws("/api/upload/ws/updates", ws_http, params={"token": token}) as ws:
                with pytest.raises(Exception) as closed:
                    await ws.receive_text()
            assert getattr(closed.value, "code", None) == 1008 and "revoked" in str(closed.value.reason)


def test_since_accepts_iso_and_epoch():
    assert parse_since("2026-03-01T10:00:00Z") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert parse_since("2026-03-01T10:00:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)  # naive = UTC
    assert parse_since("1772359200") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("soon")


async def test_heic_is_accepted_when_pillow_heif_is_installed(client):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 140, 60)).save(buf, format="HEIF")
    await register(client, "ann@example.com")
    response = await upload(client, ("phone.heic", buf.getvalue(), "image/heic"))
    assert response.status_code == 201, response.text
    (media_id,) = response.json()["media_ids"]
    item = await wait_status(client, media_id, {"READY", "FAILED"})
    assert item["status"] == "READY", item
    meta = item["metadata"]
    assert meta["mime"] == "image/heif" and (meta["width"], meta["height"]) == (320, 240)
    thumb = await client.get(item["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (320, 240)


async def test_exif_text_is_stored_and_returned_clean_and_bounded(client):
    await register(client, "ann@example.com")
    hostile = "Evil\x1b[2J<script>alert(1)</script>\x00" + "X" * 60_000
    (media_id,) = (await upload(client, ("cam.jpg", photo(make=hostile), "image/jpeg"))).json()["media_ids"]
    item = await wait_status(client, media_id, {"READY", "FAILED"})
    make = item["technical_metadata"]["make"]
    assert len(make) == 128 and make.startswith("Evil[2J<script>alert(1)</script>XXX")
    assert all(ch.isprintable() for ch in make)
