"""LoRA surface performance, in one run, each figure beside its baseline measured in the same run.

1. list/search with 50,000 adapters (SQLite; `--pg` adds PostgreSQL): p50/p99 of GET /v1/adapters
   (default page, a search, a tag filter, a sort) through a real server (uvicorn on loopback);
   baseline: GET /healthz through the same server and client. Goal p99 < 20 ms.
2. Directory import (`lora.scan` job) of 5,000 generated `.safetensors` files against the raw
   header-read rate of the same files (8-byte length + JSON parse, one thread). Goal >= 50 %.
3. Export of ~2 GB (`--export-gb`) streamed by a real server in a fresh process (its peak RSS) to
   curl, against a plain `zipfile` copy (stored) of the same
   files in another fresh process. Goals: peak RSS < 200 MB, throughput >= 50 %.
4. Kiln's own overhead per generation against an instant fake SDNext (1 step, 64x64): POST
   /v1/generation/generate (immediate: a job, progress, images to the BlobStore, thumbnails)
   minus the direct txt2img call to the same fake. Goal < 10 ms.

   1b. the history screen's page (GET /v1/generation/results, 50 results and the stats of every
   match) over 20,000 results: newest, a search, each sort, date + rating, a size, a deep page.

    .venv/bin/python bench/lora.py [--quick] [--only list,history,scan,export,generate] [--pg] [--export-gb 2]

Generated files are kept under bench/.work/lora/ (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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

    settings = Settings(_env_file=None, home=home, database_url=db_url, broker_url="memory://",
                        apps=["lora"], log_level="warning")  # type: ignore[call-arg]
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
                rows.append({"id": aid, "name": name, "version": None, "version_key": "", "visibility": "Public",
                             "tags": tag, "trained_words": [f"{words[i % 10]} word"], "triggers": [], "nsfw_level": 0,
                             "supports_generation": False, "stats": {}, "extra": {},
                             "file_path": f"/loras/{name}.safetensors", "file_stem": name,
                             "primary_file_size_kb": i % 5000, "trigger_candidates": [], "header_metadata": {},
                             "weight": 1.0, "active": i % 50 == 0, "ordinal": None,
                             "search_text": search_text(SimpleNamespace(
                                 name=name, alias=None, file_stem=name, primary_file_name=None, version=None,
                                 tags=list(dict.fromkeys(tag)), trained_words=[f"{words[i % 10]} word"],
                                 triggers=[])),
                             "created_at": now, "updated_at": now})
                tags += [{"adapter_id": aid, "tag_norm": t, "tag": t, "name_key": name.lower()}
                         for t in dict.fromkeys(tag)]
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
            queries = {"page": {}, "search common": {"search": "neon"}, "search rare": {"search": "neon-01234"},
                       "tag": {"tags": "watercolor"}, "two tags (40%)": {"tags": "watercolor,pixel"},
                       "sort": {"sort": "created_at", "page": 20}, "search+tag": {"search": "ink", "tags": "cat"}}
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
    return {"p50": _pct(times, 50), "p99": _pct(times, 99), "cpu": (time.process_time() - cpu) * 1000 / rounds,
            "last": r.json()}


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
                rows.append({"id": str(uuid.uuid4()), "kind": "lora.generate", "surface": "lora",
                             "status": "succeeded" if i < count else "failed", "progress": 1.0, "attempts": 1,
                             "max_attempts": 1, "created_at": at, "updated_at": at, "finished_at": at,
                             "payload": {"prompt": prompt, "params": {"prompt": prompt, "width": side, "height": side,
                                                                      "negative_prompt": "blurry", "steps": 20}},
                             "result": {"status": "completed", "images": ["k"], "bytes": 1000 + i % 977,
                                        "rating": i % 6 or None, "is_favorite": i % 11 == 0}})
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
            queries = {"newest": {}, "search": {"search": "anime neon"}, "sort prompt": {"sort": "prompt"},
                       "sort rating": {"sort": "rating"}, "week, 4+ stars": {"date_filter": "week", "min_rating": 4},
                       "1024x1024": {"width": 1024, "height": 1024}, "page 100": {"page": 100}}
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                out = {label: await _timed(client, "/v1/generation/results", {"page": 1, "page_size": 50, **params},
                                           rounds) for label, params in queries.items()}
    return out


# ---------------------------------------------------------------- 2. scan
def _make_files(folder: Path, count: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*.safetensors")))
    for i in range(existing, count):
        meta = {"ss_output_name": f"lora_{i}", "ss_base_model_version": "sdxl_base_v1-0", "ss_network_dim": "4",
                "ss_network_alpha": "2", "ss_tag_frequency": json.dumps({"d": {f"tag{i % 97}": 10, "style": 3}})}
        tensors = {"lora_unet_a.lora_down.weight": np.zeros((4, 16), dtype=np.float16),
                   "lora_unet_a.lora_up.weight": np.zeros((16, 4), dtype=np.float16)}
        save_file(tensors, str(folder / f"lora_{i:05d}.safetensors"), metadata=meta)


def _raw_headers(files: list[Path]) -> tuple[float, float]:
    t, cpu = time.perf_counter(), time.process_time()
    for path in files:
        with open(path, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            json.loads(fh.read(n))
    return time.perf_counter() - t, time.process_time() - cpu


async def bench_scan(count: int) -> dict[str, Any]:
    import httpx

    folder = WORK / f"scan{count}"
    await asyncio.to_thread(_make_files, folder, count)
    files = sorted(folder.glob("*.safetensors"))[:count]
    raw, raw_cpu = min(_raw_headers(files) for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/kiln.db"
        lora = LoraSettings(_env_file=None, dir=folder)  # type: ignore[call-arg]
        async with serve(Path(tmp) / "home", db_url, lora) as url, httpx.AsyncClient(base_url=url, timeout=60) as c:
            t, cpu = time.perf_counter(), time.process_time()
            job = (await c.post("/v1/adapters/scan", json={})).json()["job_id"]
            while True:
                status = (await c.get(f"/v1/adapters/scan/{job}")).json()
                if status["status"] in ("succeeded", "failed"):
                    break
                # Polls cost CPU in this same process: every 2 % of the elapsed time (<= 2 % late).
                await asyncio.sleep(min(0.05, max(0.002, 0.02 * (time.perf_counter() - t))))
            kiln, kiln_cpu = time.perf_counter() - t, time.process_time() - cpu
            assert status["status"] == "succeeded" and status["result"]["imported"] == count, status
    # CPU per file of this process (the server, its SQLite and reader threads, and the polling client).
    return {"files": count, "raw_files_per_s": count / raw, "kiln_files_per_s": count / kiln,
            "ratio": raw / kiln, "raw_cpu_us_per_file": raw_cpu / count * 1e6,
            "kiln_cpu_us_per_file": kiln_cpu / count * 1e6}


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
    return {"bytes": sink.n, "seconds": seconds, "cpu_seconds": time.process_time() - cpu,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
                await s.execute(insert(Adapter), [{
                    "id": str(uuid.uuid4()), "name": p.stem, "version_key": "", "visibility": "Public", "tags": [],
                    "trained_words": [], "triggers": [], "nsfw_level": 0, "supports_generation": False, "stats": {},
                    "extra": {}, "file_path": str(p), "file_stem": p.stem, "trigger_candidates": [],
                    "header_metadata": {}, "weight": 1.0, "active": False, "search_text": p.stem,
                    "created_at": now, "updated_at": now} for p in files])
                await s.commit()
            await db.dispose()
            # The client is another process (curl), as a browser would be: this process is the server.
            t, cpu = time.perf_counter(), time.process_time()
            proc = await asyncio.create_subprocess_exec(
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-X", "POST",
                "-H", "content-type: application/json", "-d", "{}", f"{url}/v1/export",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            code, total = out.decode().split()
            assert code == "200", code
            total = int(total)
    return {"bytes": total, "seconds": seconds, "cpu_seconds": cpu,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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
    proc = await asyncio.create_subprocess_exec("curl", "-s", "-o", "/dev/null", "-X", "POST",
                                                f"http://127.0.0.1:{port}/s")
    await proc.wait()
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    server.should_exit = True
    await task
    return {"bytes": count * len(chunk), "seconds": seconds, "cpu_seconds": cpu, "maxrss_mb": 0}


def bench_export(gb: float) -> dict[str, Any]:
    _big_files(gb)
    results = {}
    for phase in ("export-zip", "export-kiln", "export-ceiling"):
        out = subprocess.run([sys.executable, __file__, "--phase", phase, "--export-gb", str(gb)],
                             capture_output=True, text=True, check=True)
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    z, k, c = results["export-zip"], results["export-kiln"], results["export-ceiling"]
    zip_rate, kiln_rate = z["bytes"] / z["seconds"] / 1e6, k["bytes"] / k["seconds"] / 1e6
    return {"http_ceiling_mb_per_s": c["bytes"] / c["seconds"] / 1e6, "zipfile_mb_per_s": zip_rate,
            "kiln_mb_per_s": kiln_rate, "ratio": kiln_rate / zip_rate, "kiln_peak_rss_mb": k["maxrss_mb"],
            "zipfile_peak_rss_mb": z["maxrss_mb"], "bytes": k["bytes"],
            # CPU seconds per GB in the process that writes the archive (server threads included).
            "zipfile_cpu_s_per_gb": z["cpu_seconds"] / z["bytes"] * 1e9,
            "kiln_cpu_s_per_gb": k["cpu_seconds"] / k["bytes"] * 1e9,
            "ceiling_cpu_s_per_gb": c["cpu_seconds"] / c["bytes"] * 1e9}


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
    return {"direct_ms_p50": statistics.median(direct), "kiln_ms_p50": statistics.median(kiln),
            "overhead_ms_p50": statistics.median(kiln) - statistics.median(direct),
            "overhead_ms_mean": statistics.mean(kiln) - statistics.mean(direct),
            # CPU of this process (server, client and fake, all threads) per call: robust to a busy machine.
            "direct_cpu_ms": direct_cpu, "kiln_cpu_ms": kiln_cpu, "overhead_cpu_ms": kiln_cpu - direct_cpu}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="list,history,scan,export,generate")
    parser.add_argument("--pg", action="store_true")
    parser.add_argument("--export-gb", type=float, default=2.0)
    parser.add_argument("--phase", default=None)
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
                print(f"   {label:18s} p50 {v['p50']:6.2f}  p99 {v['p99']:6.2f}  cpu {v['cpu']:6.2f}  "
                      f"matches {v['last']['total']}")
    if "scan" in only:
        res = asyncio.run(bench_scan(500 if args.quick else 5000))
        print(f"2. directory import of {res['files']} files: Kiln {res['kiln_files_per_s']:.0f} files/s, "
              f"raw header read {res['raw_files_per_s']:.0f} files/s -> {100 * res['ratio']:.1f} % (goal >= 50 %); "
              f"CPU per file: raw {res['raw_cpu_us_per_file']:.0f} us, Kiln {res['kiln_cpu_us_per_file']:.0f} us")
    if "export" in only:
        gb = 0.2 if args.quick else args.export_gb
        res = bench_export(gb)
        print(f"3. export of {res['bytes'] / 1e9:.2f} GB: Kiln {res['kiln_mb_per_s']:.0f} MB/s, plain zipfile "
              f"{res['zipfile_mb_per_s']:.0f} MB/s -> {100 * res['ratio']:.1f} % (goal >= 50 %); peak RSS Kiln "
              f"{res['kiln_peak_rss_mb']:.0f} MB (goal < 200), zipfile {res['zipfile_peak_rss_mb']:.0f} MB; "
              f"uvicorn streaming from memory to curl here: {res['http_ceiling_mb_per_s']:.0f} MB/s; CPU s/GB: "
              f"Kiln {res['kiln_cpu_s_per_gb']:.2f}, zipfile {res['zipfile_cpu_s_per_gb']:.2f}, "
              f"uvicorn from memory {res['ceiling_cpu_s_per_gb']:.2f}")
    if "generate" in only:
        res = asyncio.run(bench_generate(30 if args.quick else 100))
        print(f"4. generation against an instant fake SDNext: direct txt2img {res['direct_ms_p50']:.2f} ms, "
              f"through Kiln {res['kiln_ms_p50']:.2f} ms (p50) -> Kiln overhead {res['overhead_ms_p50']:.2f} ms "
              f"(mean {res['overhead_ms_mean']:.2f} ms; goal < 10); "
              f"CPU per call: direct {res['direct_cpu_ms']:.2f} ms, through Kiln {res['kiln_cpu_ms']:.2f} ms "
              f"-> Kiln CPU overhead {res['overhead_cpu_ms']:.2f} ms")


if __name__ == "__main__":
    main()
