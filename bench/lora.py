"""LoRA surface performance, in one run, each figure beside its baseline measured in the same run.

1. list/search with 50,000 adapters (SQLite; `--pg` adds PostgreSQL): p50/p99 of GET /v1/adapters
   (default page, a search, a tag filter, a sort) through a real server (uvicorn on loopback);
   baseline: GET /healthz through the same server and client. Goal p99 < 20 ms.
   1b. the history screen's page (GET /v1/generation/results, 50 results and the stats of every
   match) over 20,000 results: newest, a search, each sort, date + rating, a size, a deep page.
2. Directory import (`lora.scan` job) against the raw header-read rate of the same files (8-byte
   length + JSON parse, one thread). Goal >= 50 %. Two libraries: (b) `scan-real`, the issue's
   figure: 5,000 generated kohya LoRA files with real SD1.5 / SDXL module names and counts
   (~800 / ~3,000 tensor entries, 100-400 KB headers, kohya metadata with ss_tag_frequency) at
   `--real-rank` (the tensor data is a sparse hole: the rank only sets the file size, so only the
   follow-up `lora.hash` job's figure depends on it), where the scan registers and `lora.hash`
   hashes (reported beside a one-thread hashlib pass over the same files); (a) `scan`: 5,000
   generated tiny files (2 tensors, 0.5 KB), no file a trainer writes, the worst case: the raw
   read is then ~30 us per file, so the figure shows Kiln's fixed per-file cost (the row written
   into an indexed, searchable table costs more than that read alone: bench/lora_scan_floor.py).
3. Export of ~2 GB (`--export-gb`) streamed by a real server in a fresh process (its peak RSS) to
   curl, against a plain `zipfile` copy (stored) of the same
   files in another fresh process. Goals: peak RSS < 200 MB, throughput >= 50 %.
4. Kiln's own overhead per generation against an instant fake SDNext (1 step, 64x64): POST
   /v1/generation/generate (immediate: a job, progress, images to the BlobStore, thumbnails)
   minus the direct txt2img call to the same fake. Goal < 10 ms.

    .venv/bin/python bench/lora.py [--quick] [--only list,history,scan,scan-real,export,generate] [--pg]
        [--export-gb 2] [--real-files 5000] [--real-rank 1]

Generated files are kept under bench/.work/lora/ (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "lora"
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from kiln.app import create_app  # noqa: E402
from kiln.apps.lora.config import LoraSettings, set_lora_settings  # noqa: E402
from kiln.core.db import utcnow  # noqa: E402
from kiln.core.migrations import upgrade  # noqa: E402
from kiln.settings import Settings  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serve(home: Path, db_url: str, lora: LoraSettings) -> AsyncIterator[str]:
    """The app `kiln serve` runs, on uvicorn on loopback, embedded engine."""
    import uvicorn

    settings = Settings(
        _env_file=None, home=home, database_url=db_url, broker_url="memory://", apps=["lora"], log_level="warning"
    )  # type: ignore[call-arg]
    await asyncio.to_thread(upgrade, db_url)
    app = create_app(settings, migrate=False)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    set_lora_settings(app.state.kernel, lora)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def _pg_url() -> str:
    import asyncpg

    name = f"bench_lora_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"


def _drop_pg(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


# ---------------------------------------------------------------- 1. list/search
async def _fill(app_url: str, db_url: str, count: int) -> None:
    from sqlalchemy import insert, text

    from kiln.apps.lora.library.values import search_text
    from kiln.apps.lora.models import Adapter, AdapterTag
    from kiln.core.db import Database

    db = Database(db_url)
    words = ["ink", "anime", "portrait", "landscape", "style", "car", "cat", "neon", "watercolor", "pixel"]
    now = utcnow()
    async with db.session() as session:
        for start in range(0, count, 2000):
            rows, tags = [], []
            for i in range(start, min(count, start + 2000)):
                aid = str(uuid.uuid4())
                tag = [words[i % 10], words[(i * 7) % 10]]
                name = f"{words[(i * 3) % 10]}-{i:06d}"
                rows.append(
                    {
                        "id": aid,
                        "name": name,
                        "version": None,
                        "version_key": "",
                        "visibility": "Public",
                        "tags": tag,
                        "trained_words": [f"{words[i % 10]} word"],
                        "triggers": [],
                        "nsfw_level": 0,
                        "supports_generation": False,
                        "stats": {},
                        "extra": {},
                        "file_path": f"/loras/{name}.safetensors",
                        "file_stem": name,
                        "primary_file_size_kb": i % 5000,
                        "trigger_candidates": [],
                        "header_metadata": {},
                        "weight": 1.0,
                        "active": i % 50 == 0,
                        "ordinal": None,
                        "search_text": search_text(
                            SimpleNamespace(
                                name=name,
                                alias=None,
                                file_stem=name,
                                primary_file_name=None,
                                version=None,
                                tags=list(dict.fromkeys(tag)),
                                trained_words=[f"{words[i % 10]} word"],
                                triggers=[],
                            )
                        ),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                tags += [
                    {"adapter_id": aid, "tag_norm": t, "tag": t, "name_key": name.lower()} for t in dict.fromkeys(tag)
                ]
            await session.execute(insert(Adapter), rows)
            await session.execute(insert(AdapterTag), tags)
        await session.commit()
    # What autovacuum / a periodic ANALYZE would have done after a bulk load of this size.
    if db_url.startswith("postgresql"):
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE lora_adapters")
            await conn.exec_driver_sql("VACUUM ANALYZE lora_adapter_tags")
    else:
        async with db.session() as session:
            await session.execute(text("ANALYZE"))
            await session.commit()
    await db.dispose()


async def bench_list(db_url: str, count: int, rounds: int) -> dict[str, Any]:
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        lora = LoraSettings(_env_file=None, dir=Path(tmp))  # type: ignore[call-arg]
        async with serve(Path(tmp) / "home", db_url, lora) as url:
            await _fill(url, db_url, count)
            queries = {
                "page": {},
                "search common": {"search": "neon"},
                "search rare": {"search": "neon-01234"},
                "tag": {"tags": "watercolor"},
                "two tags (40%)": {"tags": "watercolor,pixel"},
                "sort": {"sort": "created_at", "page": 20},
                "search+tag": {"search": "ink", "tags": "cat"},
            }
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                for _ in range(20):
                    await client.get("/healthz")
                    await client.get("/v1/adapters")
                base = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    await client.get("/healthz")
                    base.append((time.perf_counter() - t) * 1000)
                out: dict[str, Any] = {"baseline /healthz": {"p50": _pct(base, 50), "p99": _pct(base, 99)}}
                for label, params in queries.items():
                    out[label] = await _timed(client, "/v1/adapters", params, rounds)
                    assert out[label]["last"]["total"] == count
    return out


async def _timed(client: Any, path: str, params: dict[str, Any], rounds: int) -> dict[str, Any]:
    """p50/p99 of `rounds` GETs, and this process's CPU (server and client) per request."""
    times = []
    cpu = time.process_time()
    for _ in range(rounds):
        t = time.perf_counter()
        r = await client.get(path, params=params)
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return {
        "p50": _pct(times, 50),
        "p99": _pct(times, 99),
        "cpu": (time.process_time() - cpu) * 1000 / rounds,
        "last": r.json(),
    }


async def _fill_history(db_url: str, count: int) -> None:
    """`count` succeeded generations (and a tenth as many failed ones) spread over 90 days, as
    the engine writes them: prompt and size in the payload, bytes/rating/favourite in the result."""
    from datetime import timedelta

    from sqlalchemy import insert, text

    from kiln.core.db import Database
    from kiln.core.jobs import Job

    db = Database(db_url)
    words = ["ink", "anime", "portrait", "landscape", "style", "car", "cat", "neon", "watercolor", "pixel"]
    sides = [512, 768, 1024]
    now = utcnow()
    async with db.session() as session:
        for start in range(0, count + count // 10, 2000):
            rows = []
            for i in range(start, min(count + count // 10, start + 2000)):
                prompt = f"{words[i % 10]} {words[(i * 7) % 10]} study {i}"
                side = sides[i % 3]
                at = now - timedelta(minutes=i * 90 * 24 * 60 / count)
                rows.append(
                    {
                        "id": str(uuid.uuid4()),
                        "kind": "lora.generate",
                        "surface": "lora",
                        "status": "succeeded" if i < count else "failed",
                        "progress": 1.0,
                        "attempts": 1,
                        "max_attempts": 1,
                        "created_at": at,
                        "updated_at": at,
                        "finished_at": at,
                        "payload": {
                            "prompt": prompt,
                            "params": {
                                "prompt": prompt,
                                "width": side,
                                "height": side,
                                "negative_prompt": "blurry",
                                "steps": 20,
                            },
                        },
                        "result": {
                            "status": "completed",
                            "images": ["k"],
                            "bytes": 1000 + i % 977,
                            "rating": i % 6 or None,
                            "is_favorite": i % 11 == 0,
                        },
                    }
                )
            await session.execute(insert(Job), rows)
        await session.commit()
    async with db.session() as session:
        await session.execute(text("ANALYZE"))
        await session.commit()
    await db.dispose()


async def bench_history(db_url: str, count: int, rounds: int) -> dict[str, Any]:
    """The history screen's page (50 results and the stats of every match) through the server."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        lora = LoraSettings(_env_file=None, dir=Path(tmp))  # type: ignore[call-arg]
        async with serve(Path(tmp) / "home", db_url, lora) as url:
            await _fill_history(db_url, count)
            queries = {
                "newest": {},
                "search": {"search": "anime neon"},
                "sort prompt": {"sort": "prompt"},
                "sort rating": {"sort": "rating"},
                "week, 4+ stars": {"date_filter": "week", "min_rating": 4},
                "1024x1024": {"width": 1024, "height": 1024},
                "page 100": {"page": 100},
            }
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                out = {
                    label: await _timed(
                        client, "/v1/generation/results", {"page": 1, "page_size": 50, **params}, rounds
                    )
                    for label, params in queries.items()
                }
    return out


# ---------------------------------------------------------------- 2. scan
def _make_files(folder: Path, count: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*.safetensors")))
    for i in range(existing, count):
        meta = {
            "ss_output_name": f"lora_{i}",
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_network_dim": "4",
            "ss_network_alpha": "2",
            "ss_tag_frequency": json.dumps({"d": {f"tag{i % 97}": 10, "style": 3}}),
        }
        tensors = {
            "lora_unet_a.lora_down.weight": np.zeros((4, 16), dtype=np.float16),
            "lora_unet_a.lora_up.weight": np.zeros((16, 4), dtype=np.float16),
        }
        save_file(tensors, str(folder / f"lora_{i:05d}.safetensors"), metadata=meta)


def _raw_headers(files: list[Path]) -> tuple[float, float]:
    t, cpu = time.perf_counter(), time.process_time()
    for path in files:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            json.loads(fh.read(n))
    return time.perf_counter() - t, time.process_time() - cpu


# Real kohya module layouts: (prefix, in_features, out_features) of every LoRA-adapted layer.
def _sd15_modules() -> list[tuple[str, int, int]]:
    mods: list[tuple[str, int, int]] = []
    blocks = [(f"down_blocks_{b}_attentions_{a}", d) for b, d in enumerate((320, 640, 1280)) for a in range(2)]
    blocks += [("mid_block_attentions_0", 1280)]
    blocks += [(f"up_blocks_{b}_attentions_{a}", d) for b, d in ((1, 1280), (2, 640), (3, 320)) for a in range(3)]
    for block, d in blocks:
        mods += [(f"lora_unet_{block}_proj_in", d, d), (f"lora_unet_{block}_proj_out", d, d)]
        mods += _transformer(f"lora_unet_{block}_transformer_blocks_0", d, 768)
    mods += _text_encoder("lora_te", 12, 768)
    return mods


def _sdxl_modules() -> list[tuple[str, int, int]]:
    mods: list[tuple[str, int, int]] = []
    layout = [
        ("down_blocks_1", 640, 2, 2),
        ("down_blocks_2", 1280, 2, 10),
        ("mid_block", 1280, 1, 10),
        ("up_blocks_0", 1280, 3, 10),
        ("up_blocks_1", 640, 3, 2),
    ]
    for block, d, attentions, depth in layout:
        for a in range(attentions):
            name = f"lora_unet_{block}_attentions_{a}"
            mods += [(f"{name}_proj_in", d, d), (f"{name}_proj_out", d, d)]
            for t in range(depth):
                mods += _transformer(f"{name}_transformer_blocks_{t}", d, 2048)
    mods += _text_encoder("lora_te1", 12, 768) + _text_encoder("lora_te2", 32, 1280)
    return mods


def _transformer(name: str, d: int, context: int) -> list[tuple[str, int, int]]:
    return [
        (f"{name}_attn1_to_q", d, d),
        (f"{name}_attn1_to_k", d, d),
        (f"{name}_attn1_to_v", d, d),
        (f"{name}_attn1_to_out_0", d, d),
        (f"{name}_attn2_to_q", d, d),
        (f"{name}_attn2_to_k", context, d),
        (f"{name}_attn2_to_v", context, d),
        (f"{name}_attn2_to_out_0", d, d),
        (f"{name}_ff_net_0_proj", d, 8 * d),
        (f"{name}_ff_net_2", 4 * d, d),
    ]


def _text_encoder(prefix: str, layers: int, d: int) -> list[tuple[str, int, int]]:
    return [
        (f"{prefix}_text_model_encoder_layers_{i}_{m}", a, b)
        for i in range(layers)
        for m, a, b in (
            ("self_attn_q_proj", d, d),
            ("self_attn_k_proj", d, d),
            ("self_attn_v_proj", d, d),
            ("self_attn_out_proj", d, d),
            ("mlp_fc1", d, 4 * d),
            ("mlp_fc2", 4 * d, d),
        )
    ]


TAG_WORDS = [
    "1girl",
    "solo",
    "looking_at_viewer",
    "smile",
    "short_hair",
    "long_hair",
    "brown_hair",
    "black_hair",
    "blue_eyes",
    "simple_background",
    "white_background",
    "shirt",
    "jacket",
    "outdoors",
    "sky",
    "cloud",
    "tree",
    "day",
    "standing",
    "upper_body",
    "portrait",
    "ink_wash",
    "monochrome",
    "watercolor",
    "traditional_media",
    "sketch",
    "lineart",
    "greyscale",
    "flower",
    "hat",
    "dress",
    "bag",
    "window",
    "indoors",
    "night",
    "city",
    "street",
    "building",
    "scenery",
    "no_humans",
    "water",
    "reflection",
]


def _real_metadata(i: int, sdxl: bool, rank: int) -> dict[str, str]:
    """What kohya's sd-scripts writes into `__metadata__` (all strings), ss_tag_frequency with a
    realistic caption vocabulary (~150 tags over two datasets)."""
    tags = {
        f"{TAG_WORDS[j % len(TAG_WORDS)]}{'' if j < len(TAG_WORDS) else f'_{j}'}": 1 + (i * 7 + j * 13) % 60
        for j in range(150)
    }
    half = dict(list(tags.items())[:75])
    datasets = [
        {
            "is_dreambooth": True,
            "batch_size_per_device": 2,
            "num_train_images": 40,
            "num_reg_images": 0,
            "resolution": [1024, 1024] if sdxl else [512, 512],
            "enable_bucket": True,
            "min_bucket_reso": 256,
            "max_bucket_reso": 2048,
            "tag_frequency": {"10_style": tags},
            "bucket_info": {
                "buckets": {str(k): {"resolution": [512 + 64 * k, 512], "count": 4} for k in range(8)},
                "mean_img_ar_error": 0.02,
            },
            "subsets": [
                {
                    "img_count": 40,
                    "num_repeats": 10,
                    "color_aug": False,
                    "flip_aug": False,
                    "random_crop": False,
                    "shuffle_caption": True,
                    "keep_tokens": 1,
                    "image_dir": "10_style",
                    "class_tokens": "style",
                }
            ],
        }
    ]
    base = "sdxl_base_v1-0" if sdxl else "sd_v1"
    meta = {
        "ss_session_id": str(1000 + i),
        "ss_training_started_at": "1700000000.0",
        "ss_output_name": f"real_{i}",
        "ss_learning_rate": "0.0001",
        "ss_text_encoder_lr": "5e-05",
        "ss_unet_lr": "0.0001",
        "ss_num_train_images": "400",
        "ss_num_reg_images": "0",
        "ss_num_batches_per_epoch": "200",
        "ss_num_epochs": "10",
        "ss_epoch": "10",
        "ss_batch_size_per_device": "2",
        "ss_total_batch_size": "2",
        "ss_gradient_checkpointing": "True",
        "ss_gradient_accumulation_steps": "1",
        "ss_max_train_steps": "2000",
        "ss_lr_warmup_steps": "0",
        "ss_lr_scheduler": "cosine_with_restarts",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank / 2),
        "ss_mixed_precision": "fp16",
        "ss_full_fp16": "False",
        "ss_v2": "False",
        "ss_base_model_version": base,
        "ss_clip_skip": "2",
        "ss_max_token_length": "225",
        "ss_cache_latents": "True",
        "ss_seed": "42",
        "ss_lowram": "False",
        "ss_noise_offset": "0.0357",
        "ss_min_snr_gamma": "5.0",
        "ss_training_comment": "None",
        "ss_sd_scripts_commit_hash": "a9ec90c40a9ce8a6d1a9c3bfa4a9bbd5c9bff1d7",
        "ss_optimizer": "bitsandbytes.optim.adamw.AdamW8bit",
        "ss_max_grad_norm": "1.0",
        "ss_caption_dropout_rate": "0.0",
        "ss_prior_loss_weight": "1.0",
        "ss_steps": "2000",
        "ss_sd_model_name": "sd_xl_base_1.0.safetensors" if sdxl else "v1-5-pruned.safetensors",
        "ss_sd_model_hash": "be9edd61",
        "ss_new_sd_model_hash": "31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
        "ss_vae_name": "None",
        "ss_resolution": "(1024, 1024)" if sdxl else "(512, 512)",
        "ss_datasets": json.dumps(datasets),
        "ss_tag_frequency": json.dumps({"10_style": half, "5_extra": tags}),
        "ss_dataset_dirs": json.dumps({"10_style": {"n_repeats": 10, "img_count": 40}}),
        "ss_bucket_info": json.dumps(datasets[0]["bucket_info"]),
        "ss_training_finished_at": "1700003600.0",
        "sshs_model_hash": f"{i:064x}",
        "sshs_legacy_hash": f"{i:08x}",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora" if sdxl else "stable-diffusion-v1/lora",
        "modelspec.title": f"real_{i}",
        "modelspec.resolution": "1024x1024" if sdxl else "512x512",
        "modelspec.date": "2024-01-01T00:00:00",
        "modelspec.prediction_type": "epsilon",
    }
    return meta


def _write_real(path: Path, i: int, rank: int) -> None:
    """A kohya LoRA file as safetensors lays it out (F16, 8-byte aligned header); the tensor data
    (zeros) is a sparse hole, so the files have real sizes without filling the disk."""
    sdxl = i % 2 == 1
    header: dict[str, Any] = {"__metadata__": _real_metadata(i, sdxl, rank)}
    offset = 0
    for name, fan_in, fan_out in _sdxl_modules() if sdxl else _sd15_modules():
        tensors = ((".alpha", []), (".lora_down.weight", [rank, fan_in]), (".lora_up.weight", [fan_out, rank]))
        for suffix, shape in tensors:
            size = 2 * (math.prod(shape) if shape else 1)
            header[name + suffix] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + offset)


def _make_real_files(folder: Path, count: int, rank: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"real_{i:05d}.safetensors"
        if not path.exists():
            _write_real(path, i, rank)


def _raw_sha256(files: list[Path]) -> tuple[float, float]:
    t, cpu = time.perf_counter(), time.process_time()
    for path in files:
        digest = hashlib.sha256()
        with open(path, "rb", buffering=0) as fh:
            while block := fh.read(1024 * 1024):
                digest.update(block)
    return time.perf_counter() - t, time.process_time() - cpu


async def _wait_job(c: Any, job: str, started: float) -> dict[str, Any]:
    while True:
        status = (await c.get(f"/v1/adapters/scan/{job}")).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        # Polls cost CPU in this same process: every 2 % of the elapsed time (<= 2 % late).
        await asyncio.sleep(min(0.05, max(0.002, 0.02 * (time.perf_counter() - started))))


async def _kiln_scan(folder: Path, count: int) -> dict[str, Any]:
    """A scan through the real server: registration (the library usable), then the lora.hash job."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/kiln.db"
        empty = Path(tmp) / "empty"
        empty.mkdir()
        lora = LoraSettings(_env_file=None, dir=folder, roots=[empty])  # type: ignore[call-arg]
        async with serve(Path(tmp) / "home", db_url, lora) as url, httpx.AsyncClient(base_url=url, timeout=60) as c:
            # Warm-up (first request, first job) outside the measurement: a scan of an empty folder.
            warm = (await c.post("/v1/adapters/scan", json={"directory": str(empty)})).json()["job_id"]
            await _wait_job(c, warm, time.perf_counter())
            t, cpu = time.perf_counter(), time.process_time()
            status = await _wait_job(c, (await c.post("/v1/adapters/scan", json={})).json()["job_id"], t)
            scan, scan_cpu = time.perf_counter() - t, time.process_time() - cpu
            assert status["status"] == "succeeded" and status["result"]["imported"] == count, status
            hashing = await _wait_job(c, status["result"]["hash_job_id"], t)
            hashed, hashed_cpu = time.perf_counter() - t, time.process_time() - cpu
            assert hashing["status"] == "succeeded" and hashing["result"]["hashed"] == count, hashing
    # CPU of this process (the server, its SQLite and reader threads, and the polling client).
    return {"scan_s": scan, "scan_cpu_s": scan_cpu, "hashed_s": hashed, "hashed_cpu_s": hashed_cpu}


async def bench_scan(count: int) -> dict[str, Any]:
    folder = WORK / f"scan{count}"
    await asyncio.to_thread(_make_files, folder, count)
    files = sorted(folder.glob("*.safetensors"))[:count]
    raw, raw_cpu = min(_raw_headers(files) for _ in range(3))
    kiln = await _kiln_scan(folder, count)
    return {
        "files": count,
        "raw_files_per_s": count / raw,
        "kiln_files_per_s": count / kiln["scan_s"],
        "ratio": raw / kiln["scan_s"],
        "raw_cpu_us_per_file": raw_cpu / count * 1e6,
        "kiln_cpu_us_per_file": kiln["scan_cpu_s"] / count * 1e6,
        "hashed_files_per_s": count / kiln["hashed_s"],
    }


async def bench_scan_real(count: int, rank: int) -> dict[str, Any]:
    folder = WORK / f"real{count}_r{rank}"
    await asyncio.to_thread(_make_real_files, folder, count, rank)
    files = sorted(folder.glob("*.safetensors"))[:count]
    total = sum(p.stat().st_size for p in files)
    header = sum(struct.unpack("<Q", p.open("rb").read(8))[0] for p in files)
    raw, raw_cpu = min(_raw_headers(files) for _ in range(3))
    sha, sha_cpu = _raw_sha256(files)
    kiln = await _kiln_scan(folder, count)
    hash_only = kiln["hashed_s"] - kiln["scan_s"]
    return {
        "files": count,
        "rank": rank,
        "mean_mb": total / count / 1e6,
        "mean_header_kb": header / count / 1e3,
        "raw_files_per_s": count / raw,
        "kiln_files_per_s": count / kiln["scan_s"],
        "ratio": raw / kiln["scan_s"],
        "raw_cpu_us_per_file": raw_cpu / count * 1e6,
        "kiln_cpu_us_per_file": kiln["scan_cpu_s"] / count * 1e6,
        "raw_sha_mb_per_s": total / sha / 1e6,
        "kiln_hash_mb_per_s": total / hash_only / 1e6,
        "raw_sha_s": sha,
        "raw_sha_cpu_s": sha_cpu,
        "kiln_hash_s": hash_only,
        "kiln_hash_cpu_s": kiln["hashed_cpu_s"] - kiln["scan_cpu_s"],
        # What the scan cost before the hash moved out: header read + sha256 of every file, in line.
        "inline_sha_files_per_s": count / (kiln["scan_s"] + sha),
    }


# ---------------------------------------------------------------- 3. export
def _big_files(gb: float) -> list[Path]:
    folder = WORK / "export"
    folder.mkdir(parents=True, exist_ok=True)
    per = 100 * 1024 * 1024
    count = max(1, round(gb * 1024**3 / per))
    files = []
    for i in range(count):
        path = folder / f"big_{i:03d}.safetensors"
        if not path.exists() or path.stat().st_size < per:
            header = json.dumps({"w": {"dtype": "U8", "shape": [per], "data_offsets": [0, per]}}).encode()
            header += b" " * (-len(header) % 8)
            with open(path, "wb") as fh:
                fh.write(struct.pack("<Q", len(header)) + header)
                block = os.urandom(1024 * 1024)
                for _ in range(per // len(block)):
                    fh.write(block)
        files.append(path)
    return files


class _Sink:
    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def phase_export_zip(gb: float) -> dict[str, Any]:
    files = _big_files(gb)
    t, cpu = time.perf_counter(), time.process_time()
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:  # type: ignore[arg-type]
        for path in files:
            zf.write(path, path.name)
    seconds = time.perf_counter() - t
    return {
        "bytes": sink.n,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def phase_export_kiln(gb: float) -> dict[str, Any]:
    from sqlalchemy import insert

    from kiln.apps.lora.models import Adapter
    from kiln.core.db import Database

    files = _big_files(gb)
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/kiln.db"
        lora = LoraSettings(_env_file=None, dir=files[0].parent)  # type: ignore[call-arg]
        async with serve(Path(tmp) / "home", db_url, lora) as url:
            db = Database(db_url)
            now = utcnow()
            async with db.session() as s:
                await s.execute(
                    insert(Adapter),
                    [
                        {
                            "id": str(uuid.uuid4()),
                            "name": p.stem,
                            "version_key": "",
                            "visibility": "Public",
                            "tags": [],
                            "trained_words": [],
                            "triggers": [],
                            "nsfw_level": 0,
                            "supports_generation": False,
                            "stats": {},
                            "extra": {},
                            "file_path": str(p),
                            "file_stem": p.stem,
                            "trigger_candidates": [],
                            "header_metadata": {},
                            "weight": 1.0,
                            "active": False,
                            "search_text": p.stem,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for p in files
                    ],
                )
                await s.commit()
            await db.dispose()
            # The client is another process (curl), as a browser would be: this process is the server.
            t, cpu = time.perf_counter(), time.process_time()
            proc = await asyncio.create_subprocess_exec(
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                "{}",
                f"{url}/v1/export",
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            code, total = out.decode().split()
            assert code == "200", code
            total = int(total)
    return {
        "bytes": total,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def phase_export_ceiling(gb: float) -> dict[str, Any]:
    """uvicorn streaming the same number of bytes from memory to curl: the HTTP path's own limit."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()
    chunk = b"\0" * (4 * 1024 * 1024)
    count = max(1, int(gb * 1024**3 / len(chunk)))

    @app.post("/s")
    async def stream() -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield chunk

        return StreamingResponse(gen())

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    t, cpu = time.perf_counter(), time.process_time()
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-X", "POST", f"http://127.0.0.1:{port}/s"
    )
    await proc.wait()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    server.should_exit = True
    await task
    return {"bytes": count * len(chunk), "seconds": seconds, "cpu_seconds": cpu, "maxrss_mb": 0}


def bench_export(gb: float) -> dict[str, Any]:
    _big_files(gb)
    results = {}
    for phase in ("export-zip", "export-kiln", "export-ceiling"):
        out = subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--export-gb", str(gb)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    z, k, c = results["export-zip"], results["export-kiln"], results["export-ceiling"]
    zip_rate, kiln_rate = z["bytes"] / z["seconds"] / 1e6, k["bytes"] / k["seconds"] / 1e6
    return {
        "http_ceiling_mb_per_s": c["bytes"] / c["seconds"] / 1e6,
        "zipfile_mb_per_s": zip_rate,
        "kiln_mb_per_s": kiln_rate,
        "ratio": kiln_rate / zip_rate,
        "kiln_peak_rss_mb": k["maxrss_mb"],
        "zipfile_peak_rss_mb": z["maxrss_mb"],
        "bytes": k["bytes"],
        # CPU seconds per GB in the process that writes the archive (server threads included).
        "zipfile_cpu_s_per_gb": z["cpu_seconds"] / z["bytes"] * 1e9,
        "kiln_cpu_s_per_gb": k["cpu_seconds"] / k["bytes"] * 1e9,
        "ceiling_cpu_s_per_gb": c["cpu_seconds"] / c["bytes"] * 1e9,
    }


# ---------------------------------------------------------------- 4. generation overhead
async def bench_generate(rounds: int) -> dict[str, Any]:
    import threading
    from http.server import ThreadingHTTPServer

    import httpx
    from tests.fakes.sdnext import FakeSDNext, _handler

    from kiln.providers.sdnext import SDNextClient

    fake = FakeSDNext(step_seconds=0.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = {"prompt": "a cat", "steps": 1, "width": 64, "height": 64, "seed": 1}
    try:
        direct = []
        async with SDNextClient(fake.url) as sd:
            for i in range(rounds + 5):
                if i == 5:
                    direct_cpu = time.process_time()
                t = time.perf_counter()
                await sd.txt2img(body)
                direct.append((time.perf_counter() - t) * 1000)
        direct_cpu = (time.process_time() - direct_cpu) * 1000 / rounds
        direct = direct[5:]
        with tempfile.TemporaryDirectory() as tmp:
            db_url = f"sqlite+aiosqlite:///{tmp}/kiln.db"
            lora = LoraSettings(_env_file=None, dir=Path(tmp), sdnext_url=fake.url)  # type: ignore[call-arg]
            async with serve(Path(tmp) / "home", db_url, lora) as url, httpx.AsyncClient(base_url=url, timeout=60) as c:
                kiln = []
                for i in range(rounds + 5):
                    if i == 5:
                        kiln_cpu = time.process_time()
                    t = time.perf_counter()
                    r = (await c.post("/v1/generation/generate", json=body)).json()
                    kiln.append((time.perf_counter() - t) * 1000)
                    assert r["status"] == "completed", r
                kiln_cpu = (time.process_time() - kiln_cpu) * 1000 / rounds
                kiln = kiln[5:]
    finally:
        server.shutdown()
        server.server_close()
    return {
        "direct_ms_p50": statistics.median(direct),
        "kiln_ms_p50": statistics.median(kiln),
        "overhead_ms_p50": statistics.median(kiln) - statistics.median(direct),
        "overhead_ms_mean": statistics.mean(kiln) - statistics.mean(direct),
        # CPU of this process (server, client and fake, all threads) per call: robust to a busy machine.
        "direct_cpu_ms": direct_cpu,
        "kiln_cpu_ms": kiln_cpu,
        "overhead_cpu_ms": kiln_cpu - direct_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="list,history,scan,scan-real,export,generate")
    parser.add_argument("--pg", action="store_true")
    parser.add_argument("--export-gb", type=float, default=2.0)
    parser.add_argument("--phase", default=None)
    parser.add_argument("--real-files", type=int, default=0, help="2b: files with real headers (5000; --quick 100)")
    parser.add_argument("--real-rank", type=int, default=1, help="2b: LoRA rank (file size; the data is sparse)")
    args = parser.parse_args()
    if args.phase == "export-zip":
        print(json.dumps(phase_export_zip(args.export_gb)))
        return
    if args.phase in ("export-kiln", "export-ceiling"):
        with contextlib.suppress(ImportError):
            import uvloop  # what `kiln serve` (uvicorn[standard]) runs on

            uvloop.install()
        phase = phase_export_kiln if args.phase == "export-kiln" else phase_export_ceiling
        print(json.dumps(asyncio.run(phase(args.export_gb))))
        return
    only = set(args.only.split(","))
    count = 5000 if args.quick else 50_000
    if "list" in only:
        with tempfile.TemporaryDirectory() as tmp:
            res = asyncio.run(bench_list(f"sqlite+aiosqlite:///{tmp}/kiln.db", count, 100 if args.quick else 300))
        print(f"1. list/search, {count} adapters, SQLite (ms; goal p99 < 20; cpu = this process per request):")
        for label, v in res.items():
            print(f"   {label:18s} p50 {v['p50']:6.2f}  p99 {v['p99']:6.2f}  cpu {v.get('cpu', 0):6.2f}")
        if args.pg:
            url = _pg_url()
            try:
                res = asyncio.run(bench_list(url, count, 100 if args.quick else 300))
            finally:
                _drop_pg(url)
            print(f"   PostgreSQL, {count} adapters:")
            for label, v in res.items():
                print(f"   {label:18s} p50 {v['p50']:6.2f}  p99 {v['p99']:6.2f}  cpu {v.get('cpu', 0):6.2f}")
    if "history" in only:
        results = 2000 if args.quick else 20_000
        urls = [("SQLite", None)] + ([("PostgreSQL", "pg")] if args.pg else [])
        for name, kind in urls:
            with tempfile.TemporaryDirectory() as tmp:
                url = _pg_url() if kind else f"sqlite+aiosqlite:///{tmp}/kiln.db"
                try:
                    res = asyncio.run(bench_history(url, results, 50 if args.quick else 200))
                finally:
                    if kind:
                        _drop_pg(url)
            print(f"1b. history page (50 results + stats of every match), {results} results, {name} (ms):")
            for label, v in res.items():
                print(
                    f"   {label:18s} p50 {v['p50']:6.2f}  p99 {v['p99']:6.2f}  cpu {v['cpu']:6.2f}  "
                    f"matches {v['last']['total']}"
                )
    if "scan" in only:
        res = asyncio.run(bench_scan(500 if args.quick else 5000))
        print(
            f"2a. directory import of {res['files']} generated tiny files (0.5 KB, 2 tensors): Kiln registers "
            f"{res['kiln_files_per_s']:.0f} files/s, raw header read {res['raw_files_per_s']:.0f} files/s -> "
            f"{100 * res['ratio']:.1f} % (worst case, Kiln's fixed per-file cost; the goal is judged on 2b); CPU per "
            f"file: raw {res['raw_cpu_us_per_file']:.0f} us, "
            f"Kiln {res['kiln_cpu_us_per_file']:.0f} us; all hashed (lora.hash done) at "
            f"{res['hashed_files_per_s']:.0f} files/s"
        )
    if "scan-real" in only:
        real = args.real_files or (100 if args.quick else 5000)
        res = asyncio.run(bench_scan_real(real, args.real_rank))
        print(
            f"2b. directory import of {res['files']} kohya LoRA files with real headers (SD1.5 and SDXL module "
            f"layouts, {res['mean_header_kb']:.0f} KB header, rank {res['rank']}, {res['mean_mb']:.1f} MB mean): "
            f"Kiln registers {res['kiln_files_per_s']:.0f} files/s, raw header read {res['raw_files_per_s']:.0f} "
            f"files/s -> {100 * res['ratio']:.1f} % (goal >= 50 %); CPU per file: raw "
            f"{res['raw_cpu_us_per_file']:.0f} us, Kiln {res['kiln_cpu_us_per_file']:.0f} us. Hashing after it "
            f"(lora.hash): {res['kiln_hash_mb_per_s']:.0f} MB/s ({res['kiln_hash_s']:.1f} s, CPU "
            f"{res['kiln_hash_cpu_s']:.1f} s), one-thread hashlib of the same files {res['raw_sha_mb_per_s']:.0f} "
            f"MB/s ({res['raw_sha_s']:.1f} s, CPU {res['raw_sha_cpu_s']:.1f} s); with the sha256 in line the "
            f"scan would register ~{res['inline_sha_files_per_s']:.0f} files/s"
        )
    if "export" in only:
        gb = 0.2 if args.quick else args.export_gb
        res = bench_export(gb)
        print(
            f"3. export of {res['bytes'] / 1e9:.2f} GB: Kiln {res['kiln_mb_per_s']:.0f} MB/s, plain zipfile "
            f"{res['zipfile_mb_per_s']:.0f} MB/s -> {100 * res['ratio']:.1f} % (goal >= 50 %); peak RSS Kiln "
            f"{res['kiln_peak_rss_mb']:.0f} MB (goal < 200), zipfile {res['zipfile_peak_rss_mb']:.0f} MB; "
            f"uvicorn streaming from memory to curl here: {res['http_ceiling_mb_per_s']:.0f} MB/s; CPU s/GB: "
            f"Kiln {res['kiln_cpu_s_per_gb']:.2f}, zipfile {res['zipfile_cpu_s_per_gb']:.2f}, "
            f"uvicorn from memory {res['ceiling_cpu_s_per_gb']:.2f}"
        )
    if "generate" in only:
        res = asyncio.run(bench_generate(30 if args.quick else 100))
        print(
            f"4. generation against an instant fake SDNext: direct txt2img {res['direct_ms_p50']:.2f} ms, "
            f"through Kiln {res['kiln_ms_p50']:.2f} ms (p50) -> Kiln overhead {res['overhead_ms_p50']:.2f} ms "
            f"(mean {res['overhead_ms_mean']:.2f} ms; goal < 10); "
            f"CPU per call: direct {res['direct_cpu_ms']:.2f} ms, through Kiln {res['kiln_cpu_ms']:.2f} ms "
            f"-> Kiln CPU overhead {res['overhead_cpu_ms']:.2f} ms"
        )


if __name__ == "__main__":
    main()
