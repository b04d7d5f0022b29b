"""Image bombs: the pixel limit (from the header, at upload and in the worker) and the
decode-memory budget shared by the running steps."""

from __future__ import annotations

import asyncio
import io
from functools import lru_cache

import pytest
from PIL import Image

from kiln.apps.media.config import MediaSettings, set_media_settings
from kiln.apps.media.processing import imaging
from kiln.apps.media.processing.decode_budget import MB, DecodeBudget, decode_budget
from tests.apps.media.mediakit import photo, register, settings, upload, wait_status  # noqa: F401  (fixture)


@lru_cache(maxsize=1)
def bomb_png() -> bytes:
    """120 megapixels in 15 KB: a 1-bit PNG, what Pillow's own limit (178.9 MP) lets through."""
    buf = io.BytesIO()
    Image.new("1", (12_000, 10_000)).save(buf, "PNG")
    return buf.getvalue()


def test_probe_refuses_too_many_pixels_from_the_header_alone():
    data = bomb_png()
    message = "image too large: 12000x10000 is 120.0 megapixels, the limit is 100 megapixels"
    with pytest.raises(imaging.ImageTooLarge) as exc:
        imaging.probe(data)
    assert str(exc.value) == message
    # The pixels are never read: the header and a few bytes of the image data are enough.
    with pytest.raises(imaging.ImageTooLarge):
        imaging.probe(data[:200])
    assert imaging.probe(data, max_pixels=130_000_000).width == 12_000


def test_the_worker_refuses_it_too():
    with pytest.raises(imaging.ImageTooLarge, match="the limit is 0.2 megapixels"):
        imaging.extract(photo(size=(640, 480)), max_pixels=200_000)
    assert imaging.extract(photo(size=(640, 480)), max_pixels=640 * 480).width == 640


def test_decode_cost_uses_the_jpeg_draft_scale():
    # A 12 MP JPEG for a 400 px thumbnail decodes at 1/8 scale; for a 1280 px box at 1/2.
    assert imaging.decode_cost_bytes(4000, 3000, "image/jpeg", 400) == 500 * 375 * 4 * 2
    assert imaging.decode_cost_bytes(4000, 3000, "image/jpeg", 1280) == 2000 * 1500 * 4 * 2
    assert imaging.decode_cost_bytes(300, 200, "image/jpeg", 400) == 300 * 200 * 4 * 2
    assert imaging.decode_cost_bytes(4000, 3000, "image/png", 400) == 4000 * 3000 * 4 * 3


async def test_budget_makes_a_step_wait_first_come_first_served():
    budget = DecodeBudget(100)
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("a", "b", "c", "d")}

    async def step(name: str, nbytes: int) -> None:
        async with budget.reserve(nbytes) as held:
            order.append(f"{name}+{held}")
            await release[name].wait()
        order.append(f"{name}-")

    tasks = [asyncio.create_task(step("a", 60))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(step("b", 60)))  # 120 > 100: waits for a
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(step("c", 10)))  # would fit, but b came first
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(step("d", 500)))  # more than the budget: runs alone
    await asyncio.sleep(0.01)
    assert order == ["a+60"] and budget.in_use == 60 and budget.waits == 3
    release["a"].set()
    await asyncio.sleep(0.01)
    assert order == ["a+60", "a-", "b+60", "c+10"] and budget.in_use == 70
    release["b"].set()
    release["c"].set()
    await asyncio.sleep(0.01)
    assert order[-1] == "d+100" and budget.in_use == 100
    release["d"].set()
    await asyncio.gather(*tasks)
    assert budget.in_use == 0 and budget.peak == 100


async def test_a_cancelled_waiter_gives_its_turn_away():
    budget = DecodeBudget(10)
    async with budget.reserve(10):
        waiter = asyncio.create_task(budget.reserve(5).__aenter__())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    async with budget.reserve(10):
        assert budget.in_use == 10
    assert budget.in_use == 0


async def test_upload_above_the_pixel_limit_is_415(app, client):
    await register(client, "ann@example.com")
    response = await upload(client, ("bomb.png", bomb_png(), "image/png"))
    assert response.status_code == 415
    (rejected,) = response.json()["detail"]["rejected"]
    assert rejected["status"] == 415 and rejected["detail"] == (
        "Not an accepted image: image too large: 12000x10000 is 120.0 megapixels, the limit is 100 megapixels"
    )
    assert (await client.get("/api/vault")).json()["total"] == 0
    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, max_pixels=300_000))
    small = await upload(
        client, ("ok.jpg", photo(size=(600, 500)), "image/jpeg"), ("big.jpg", photo(size=(640, 480)), "image/jpeg")
    )
    assert small.status_code == 201 and [r["filename"] for r in small.json()["rejected"]] == ["big.jpg"]


async def test_steps_share_the_decode_budget(app, client):
    kernel = app.state.kernel
    set_media_settings(kernel, MediaSettings(_env_file=None, decode_budget_mb=1))
    await register(client, "ann@example.com")
    # Each 2400x1800 JPEG costs 2.2 MB at its draft scale: more than the 1 MB budget, so the
    # steps decode one at a time, each holding the whole budget, and all still finish.
    files = [(f"p{i}.jpg", photo(size=(2400, 1800), color=(10 * i, 90, 160)), "image/jpeg") for i in range(4)]
    ids = (await upload(client, *files)).json()["media_ids"]
    for media_id in ids:
        assert (await wait_status(client, media_id, {"READY", "FAILED"}))["status"] == "READY"
    budget = decode_budget(kernel)
    assert budget.total == 1 * MB and budget.peak == budget.total and budget.in_use == 0
