"""Helpers for the media API tests: users, generated photos (with GPS EXIF), waiting on the pipeline."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from fractions import Fraction
from typing import Any

import httpx
import pytest
from PIL import Image, TiffImagePlugin

from kiln.settings import Settings
from tests.conftest import make_settings

PASSWORD = "Correct-horse-9"


@pytest.fixture
def settings(tmp_path, db_url: str) -> Settings:
    """Only the media surface is mounted: these tests are about its contract alone."""
    return make_settings(tmp_path / "home", db_url, apps=["media"])


def _dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction((value - degrees - minutes / 60) * 3600).limit_denominator(10000)
    return (
        TiffImagePlugin.IFDRational(degrees, 1),
        TiffImagePlugin.IFDRational(minutes, 1),
        TiffImagePlugin.IFDRational(seconds.numerator, seconds.denominator),
    )


def photo(
    *,
    gps: tuple[float, float, float] | None = None,
    color: tuple[int, int, int] = (40, 120, 200),
    size: tuple[int, int] = (640, 480),
    red_box: bool = False,
    fmt: str = "JPEG",
    make: str | None = "KilnCam",
) -> bytes:
    """A generated photo; `gps=(lat, lng, altitude)` writes a GPS IFD, `red_box` draws litter."""
    img = Image.new("RGB", size, color)
    if red_box:
        w, h = size
        img.paste((255, 0, 0), (w // 4, h // 4, w // 2, h // 2))
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
        exif[0x0110] = "Model T"
    if gps is not None:
        lat, lng, alt = gps
        g = exif.get_ifd(0x8825)
        g[1], g[2] = ("N" if lat >= 0 else "S"), _dms(lat)
        g[3], g[4] = ("E" if lng >= 0 else "W"), _dms(lng)
        g[5], g[6] = b"\x00", TiffImagePlugin.IFDRational(int(alt * 10), 10)
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=90, exif=exif)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/signup", json={"email": email, "password": password, "full_name": email.split("@")[0]}
    )
    assert response.status_code == 201, response.text
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["user"]


@asynccontextmanager
async def second_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser: its own cookie jar on the same app."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def upload(client: httpx.AsyncClient, *files: tuple[str, bytes, str]) -> httpx.Response:
    return await client.post("/api/upload/files", files=[("files", f) for f in files])


async def wait_status(
    client: httpx.AsyncClient, media_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        page = (await client.get("/api/vault", params={"page_size": 100})).json()
        item = next((i for i in page["items"] if i["id"] == media_id), None)
        if item is not None and item["status"] in statuses:
            return item
        if time.monotonic() > deadline:
            raise AssertionError(f"media {media_id} is {item and item['status']}, wanted {statuses}")
        await asyncio.sleep(0.05)


async def add_media(kernel: Any, user_id: str, **fields: Any) -> str:
    """A media row written straight to the database (for map, vault and reaper cases)."""
    from kiln.apps.media.models import MediaDetection, MediaItem
    from kiln.core.db import new_id

    detections = fields.pop("detections", [])
    media_id = fields.pop("id", None) or new_id()
    values: dict[str, Any] = {
        "status": "READY",
        "filename": f"{media_id[:8]}.jpg",
        "has_trash": False,
        "attempts": 0,
        "blob_key": f"media/{user_id}/{media_id}/original",
    }
    values.update(fields)
    async with kernel.db.session() as session:
        session.add(MediaItem(id=media_id, user_id=user_id, **values))
        await session.flush()
        for label, confidence in detections:
            session.add(
                MediaDetection(
                    media_id=media_id,
                    label=label,
                    confidence=confidence,
                    bbox={"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2},
                    detector="test",
                )
            )
        await session.commit()
    return media_id
