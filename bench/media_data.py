"""Generated data for bench/media.py: 12-megapixel JPEGs with GPS EXIF for the pipeline, and
map points with detections bulk-loaded into SQLite or PostgreSQL for `/api/map/stats`.

Both are deterministic (seeded) so a cached copy under bench/.work/media/ is reused across runs.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "media"
LABELS = ("bottle", "can", "plastic_bag", "cigarette", "paper", "tire")

# ---------------------------------------------------------------- images

_BASES: dict[int, Any] = {}


def _dms(value: float) -> tuple[Any, ...]:
    from PIL import TiffImagePlugin

    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = Fraction((value - d - m / 60) * 3600).limit_denominator(10000)
    R = TiffImagePlugin.IFDRational
    return (R(d, 1), R(m, 1), R(s.numerator, s.denominator))


def _make_image(args: tuple[int, str]) -> str:
    """One unique 4000x3000 photo-like JPEG (smooth structure + grain) with GPS EXIF."""
    import numpy as np
    from PIL import Image, TiffImagePlugin

    index, path = args
    rng = np.random.default_rng(index)
    seed = index % 2
    if seed not in _BASES:
        base_rng = np.random.default_rng(1000 + seed)
        low = Image.fromarray(base_rng.integers(0, 256, (75, 100, 3), dtype=np.uint8))
        smooth = np.asarray(low.resize((4000, 3000), Image.Resampling.BICUBIC), dtype=np.int16)
        grain = base_rng.integers(-12, 13, (3000, 4000, 1), dtype=np.int16)
        _BASES[seed] = (smooth + grain).clip(0, 255).astype(np.uint8)
    arr = np.roll(_BASES[seed], (int(rng.integers(0, 3000)), int(rng.integers(0, 4000))), axis=(0, 1))
    img = Image.fromarray(arr)
    x, y = int(rng.integers(0, 3600)), int(rng.integers(0, 2600))
    img.paste(tuple(int(v) for v in rng.integers(0, 256, 3)), (x, y, x + 400, y + 400))
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "BenchCam", "B-12"
    exif[0x0132] = "2024:05:01 12:00:00"
    gps = exif.get_ifd(0x8825)
    lat, lng = 47.37 + float(rng.uniform(-0.05, 0.05)), 8.54 + float(rng.uniform(-0.05, 0.05))
    gps[1], gps[2], gps[3], gps[4] = "N", _dms(lat), "E", _dms(lng)
    gps[5], gps[6] = b"\x00", TiffImagePlugin.IFDRational(4080, 10)
    img.save(path, "JPEG", quality=88, exif=exif)
    return path


def images(n: int) -> list[Path]:
    folder = WORK / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"img_{i:04d}.jpg" for i in range(n)]
    missing = [(i, str(p)) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        print(f"generating {len(missing)} 12 MP JPEGs into {folder} (once) ...", flush=True)
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(_make_image, missing, chunksize=4))
    return paths


# ---------------------------------------------------------------- map points


def backfill_sql(dialect: str) -> list[str]:
    from kiln.apps.media.map.grid import backfill_sql as sql

    return sql(dialect)


def _rows(user_id: str, n: int, sqlite: bool) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(7)
    now = datetime(2024, 5, 1, tzinfo=UTC)
    items, dets = [], []
    centres = [(rng.uniform(47.05, 47.95), rng.uniform(8.05, 8.95)) for _ in range(40)]
    for i in range(n):
        if i % 2:  # half clustered around "towns", half spread
            c = centres[i % len(centres)]
            lat, lng = min(max(rng.gauss(c[0], 0.03), 47.0), 48.0), min(max(rng.gauss(c[1], 0.03), 8.0), 9.0)
        else:
            lat, lng = rng.uniform(47.0, 48.0), rng.uniform(8.0, 9.0)
        media_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        trash = rng.random() < 0.6
        conf = round(rng.uniform(0.3, 0.99), 4) if trash else None
        at = now + timedelta(seconds=i)
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else at
        items.append(
            (
                media_id,
                user_id,
                "READY",
                f"p{i}.jpg",
                f"media/{user_id}/{media_id}/original",
                lat,
                lng,
                trash,
                conf,
                0,
                stamp,
                stamp,
            )
        )
        if trash:
            for _ in range(1 + (i % 3 == 0)):
                box = json.dumps({"x": 0.1, "y": 0.1, "w": 0.2, "h": 0.2})
                dets.append(
                    (
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                        media_id,
                        LABELS[int(rng.random() ** 2 * len(LABELS))],
                        conf,
                        box,
                        False,
                        "bench",
                        stamp,
                    )
                )
    return items, dets


ITEM_COLS = (
    "id",
    "user_id",
    "status",
    "filename",
    "blob_key",
    "lat",
    "lng",
    "has_trash",
    "confidence",
    "attempts",
    "created_at",
    "updated_at",
)
DET_COLS = ("id", "media_id", "label", "confidence", "bbox", "is_manual", "detector", "created_at")


async def fill_sqlite(db: Path, user_id: str, n: int) -> None:
    items, dets = _rows(user_id, n, sqlite=True)
    con = sqlite3.connect(db, timeout=60)
    with con:
        con.executemany(
            f"INSERT INTO media_items ({','.join(ITEM_COLS)}) VALUES ({','.join('?' * len(ITEM_COLS))})", items
        )
        con.executemany(
            f"INSERT INTO media_detections ({','.join(DET_COLS)}) VALUES ({','.join('?' * len(DET_COLS))})", dets
        )
        for sql in backfill_sql("sqlite"):  # the map grid, as migration 0006 fills it
            con.execute(sql)
    con.execute("ANALYZE")
    con.close()


async def fill_pg(dsn: str, user_id: str, n: int) -> None:
    import asyncpg

    items, dets = _rows(user_id, n, sqlite=False)
    con = await asyncpg.connect(dsn)
    try:
        await con.copy_records_to_table("media_items", records=items, columns=ITEM_COLS)
        await con.copy_records_to_table("media_detections", records=dets, columns=DET_COLS)
        for sql in backfill_sql("postgresql"):  # the map grid, as migration 0006 fills it
            await con.execute(sql)
        await con.execute("VACUUM ANALYZE media_items")
        await con.execute("VACUUM ANALYZE media_detections")
    finally:
        await con.close()
