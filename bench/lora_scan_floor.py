"""The floor under the directory import's write (issue 11): what SQLite alone costs per file.

`bench/lora.py --only scan` compares the `lora.scan` job with the raw header read of the same
generated files. This runs that scan once (through the same server), takes the rows it wrote,
and replays them into a freshly migrated database with the stdlib `sqlite3` module alone: no
SQLAlchemy, no asyncio, no row building; executemany of 500 rows per transaction, the search
id map and the trigram FTS filled per batch as the scan does. Variants drop the FTS fill, the
eight secondary indexes of `lora_adapters`, or both. Each round prints the raw header read of
the same files beside them, CPU and wall µs per file.

    .venv/bin/python bench/lora_scan_floor.py [--files 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lora import WORK, LoraSettings, _make_files, _raw_headers, _wait_job, serve, upgrade  # noqa: E402

BATCH = 500
VARIANTS = ("full", "no-fts", "no-secondary", "bare")


async def _scanned_database(folder: Path, count: int, tmp: Path) -> Path:
    import httpx

    empty = tmp / "empty"
    empty.mkdir()
    lora = LoraSettings(_env_file=None, dir=folder, roots=[empty])  # type: ignore[call-arg]
    db = tmp / "kiln.db"
    async with serve(tmp / "home", f"sqlite+aiosqlite:///{db}", lora) as url, httpx.AsyncClient(base_url=url) as c:
        job = (await c.post("/v1/adapters/scan", json={})).json()["job_id"]
        status = await _wait_job(c, job, time.perf_counter())
        assert status["status"] == "succeeded" and status["result"]["imported"] == count, status
    return db


def _replay(rows: list[tuple], columns: list[str], variant: str, tmp: Path) -> tuple[float, float]:
    db = Path(tempfile.mkdtemp(dir=tmp)) / "floor.db"
    upgrade(f"sqlite+aiosqlite:///{db}")
    con = sqlite3.connect(db, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        con.execute("PRAGMA " + pragma)
    if variant in ("no-secondary", "bare"):
        for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lora_adapters' "
            "AND sql IS NOT NULL AND name != 'ux_lora_adapters_name_version'"
        ).fetchall():
            con.execute(f"DROP INDEX {name}")
    insert = f"INSERT INTO lora_adapters ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
    at_id = columns.index("id")
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(rows), BATCH):
        chunk = rows[i : i + BATCH]
        con.execute("BEGIN")
        con.execute("INSERT INTO lora_search_deferred (deferred) VALUES (1)")
        con.executemany(insert, chunk)
        if variant in ("full", "no-secondary"):
            ids = [row[at_id] for row in chunk]
            con.executemany("INSERT INTO lora_search (adapter_id) VALUES (?)", [(i,) for i in ids])
            con.execute(
                "INSERT INTO lora_adapters_fts (rowid, search_text) SELECT s.id, a.search_text FROM lora_search s "
                f"JOIN lora_adapters a ON a.id = s.adapter_id WHERE s.adapter_id IN ({','.join('?' * len(ids))})",
                ids,
            )
        con.execute("DELETE FROM lora_search_deferred")
        con.execute("COMMIT")
    wall, used = time.perf_counter() - started, time.process_time() - cpu
    con.close()
    return wall / len(rows) * 1e6, used / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = WORK / f"scan{args.files}"
    _make_files(folder, args.files)
    files = sorted(folder.glob("*.safetensors"))[: args.files]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        source = sqlite3.connect(asyncio.run(_scanned_database(folder, args.files, tmp)))
        columns = [row[1] for row in source.execute("PRAGMA table_info(lora_adapters)")]
        rows = source.execute(f"SELECT {','.join(columns)} FROM lora_adapters ORDER BY file_path").fetchall()
        source.close()
        for _ in range(args.rounds):
            raw, raw_cpu = _raw_headers(files)
            per_file = 1e6 / len(files)
            print(f"raw header read        cpu {raw_cpu * per_file:6.1f}  wall {raw * per_file:6.1f} µs/file")
            for variant in VARIANTS:
                wall, cpu = _replay(rows, columns, variant, tmp)
                print(f"sqlite3 {variant:14s} cpu {cpu:6.1f}  wall {wall:6.1f} µs/file")


if __name__ == "__main__":
    main()
