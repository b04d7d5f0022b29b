"""The upload is streamed: bounded memory for a 300 MB body, no temp files, per-file 413, bad bodies."""

from __future__ import annotations

import asyncio
import os
import tempfile
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kiln.apps.media.config import MediaSettings, set_media_settings
from tests.apps.media.mediakit import photo, register, settings, upload  # noqa: F401  (fixture)

BOUNDARY = "kiln-test-boundary-7d1f"
MB = 1024 * 1024


def _part_head(filename: str, field: str = "files", content_type: str = "application/octet-stream") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _filler(size: int, chunk: int = MB) -> list[int]:
    return [min(chunk, size - sent) for sent in range(0, size, chunk)]


async def _multipart(
    parts: list[tuple[str, bytes, int]], *, close: bool = True, field: str = "files"
) -> AsyncIterator[bytes]:
    """Generated on the fly: each part is `head` bytes then `filler` zero bytes, 1 MiB at a time."""
    for filename, head, filler in parts:
        yield _part_head(filename, field)
        yield head
        for n in _filler(filler):
            yield bytes(n)
            await asyncio.sleep(0)  # let the server side run, as a socket would
        yield b"\r\n"
    if close:
        yield f"--{BOUNDARY}--\r\n".encode()


def _headers() -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("db_backend", ["sqlite"])  # a storage test: one database is enough
async def test_a_300_mb_upload_streams_with_bounded_memory_and_no_temp_file(app, client, tmp_path, monkeypatch):
    kernel = app.state.kernel
    set_media_settings(kernel, MediaSettings(_env_file=None, max_upload_bytes=400 * MB))
    await register(client, "ann@example.com")
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a spooling parser would write

    # A valid JPEG followed by 300 MB of padding: decoders stop at its end marker.
    head = photo()
    size = len(head) + 300 * MB
    peak_rss, baseline = 0, _rss()

    async def sample() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, _rss())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    tracemalloc.start()
    try:
        response = await client.post(
            "/api/upload/files", headers=_headers(), timeout=120, content=_multipart([("big.jpg", head, 300 * MB)])
        )
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sampler.cancel()
    assert response.status_code == 201, response.text
    (media_id,) = response.json()["media_ids"]
    assert traced_peak < 32 * MB, f"python allocations peaked at {traced_peak / MB:.1f} MiB"
    assert peak_rss - baseline < 100 * MB, f"RSS grew by {(peak_rss - baseline) / MB:.1f} MiB"
    assert _leftovers(spool) == []

    stored = kernel.blobs.local_path(f"media/{(await client.get('/api/auth/me')).json()['id']}/{media_id}/original")
    assert stored.stat().st_size == size
    assert (await client.delete(f"/api/vault/{media_id}")).status_code == 200


async def test_an_oversized_file_is_refused_while_streaming_and_the_others_kept(app, client):
    kernel = app.state.kernel
    set_media_settings(kernel, MediaSettings(_env_file=None, max_upload_bytes=MB))
    await register(client, "ann@example.com")
    first, last = photo(color=(1, 2, 3)), photo(color=(200, 2, 3))
    body = _multipart([("a.jpg", first, 0), ("huge.jpg", photo(), 40 * MB), ("b.jpg", last, 0)])
    response = await client.post("/api/upload/files", headers=_headers(), content=body, timeout=60)
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["message"] == "2 files uploaded successfully" and len(out["media_ids"]) == 2
    assert out["rejected"] == [
        {"filename": "huge.jpg", "status": 413, "detail": f"File too large: the limit is {MB} bytes"}
    ]
    vault = (await client.get("/api/vault", params={"order_by": "filename", "direction": "asc"})).json()
    assert [i["filename"] for i in vault["items"]] == ["a.jpg", "b.jpg"]
    assert [i["metadata"]["size"] for i in vault["items"]] == [len(first), len(last)]  # parts kept apart
    # Nothing of the refused file is left in storage: only the two accepted originals (+ thumbnails).
    stored = _leftovers(kernel.settings.home / "blobs")
    assert not any(".part" in p.name for p in stored)
    assert {p.parent.name for p in stored} == set(out["media_ids"])

    only = await client.post(
        "/api/upload/files", headers=_headers(), content=_multipart([("huge.jpg", photo(), 3 * MB)])
    )
    assert only.status_code == 413 and only.json()["detail"]["rejected"][0]["status"] == 413


async def test_too_many_files_beyond_the_limit_are_refused_one_by_one(app, client):
    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, max_files_per_request=2))
    await register(client, "ann@example.com")
    files = [(f"p{n}.jpg", photo(color=(n * 50, 9, 9)), "image/jpeg") for n in range(3)]
    response = await upload(client, *files)
    assert response.status_code == 201
    assert len(response.json()["media_ids"]) == 2
    assert response.json()["rejected"] == [
        {"filename": "p2.jpg", "status": 413, "detail": "Too many files: at most 2 per request"}
    ]


async def test_bad_bodies_get_clear_4xx(app, client):
    await register(client, "ann@example.com")
    wrong_type = await client.post("/api/upload/files", json={"files": []})
    assert wrong_type.status_code == 415 and wrong_type.json() == {"detail": "Expected a multipart/form-data body"}
    no_boundary = await client.post("/api/upload/files", headers={"Content-Type": "multipart/form-data"}, content=b"x")
    assert no_boundary.status_code == 400 and "boundary" in no_boundary.json()["detail"]
    garbage = await client.post("/api/upload/files", headers=_headers(), content=b"this is not multipart at all")
    assert garbage.status_code == 400 and garbage.json()["detail"].startswith("Malformed multipart body")
    # A form with only other fields has no file: FastAPI's own "missing field" answer.
    other_field = await client.post(
        "/api/upload/files", headers=_headers(), content=_multipart([("a.jpg", photo(), 0)], field="avatar")
    )
    assert other_field.status_code == 422 and other_field.json()["detail"][0]["loc"] == ["body", "files"]

    # The body breaks off inside the second file: the first is kept, the second reported, nothing half-stored.
    good = photo(color=(7, 7, 7))
    truncated = await client.post(
        "/api/upload/files",
        headers=_headers(),
        content=_multipart([("ok.jpg", good, 0), ("cut.jpg", photo(color=(8, 8, 8)), 2 * MB)], close=False),
    )
    assert truncated.status_code == 201, truncated.text
    assert truncated.json()["rejected"] == [
        {
            "filename": "cut.jpg",
            "status": 400,
            "detail": "Malformed multipart body: it ends before the closing boundary",
        }
    ]
    vault = (await client.get("/api/vault")).json()
    assert [i["filename"] for i in vault["items"]] == ["ok.jpg"]
    assert (await client.get("/api/vault", params={"status": "PENDING"})).json()["total"] == 0

    # A single-file client may name the field "file"; the documented body stays "files".
    single = await client.post("/api/upload/files", files={"file": ("one.png", photo(fmt="PNG"), "image/png")})
    assert single.status_code == 201
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/api/upload/files"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["properties"]["files"]["items"]["format"] == "binary"
