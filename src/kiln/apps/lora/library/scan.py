"""Directory import as two engine jobs: `lora.scan` registers, `lora.hash` hashes.

`lora.scan` walks a library folder and makes every `.safetensors` file an adapter (or
refreshes the adapter of the same path) from its header and sidecars alone, with progress:
files are read in batches in a thread while the previous batch is written, each batch one
transaction of plain-row bulk statements (no ORM object per file). Unreadable files are
reported as invalid and do not stop the scan; symlinks that leave the roots are skipped.

The whole-file sha256 is not computed there: on real libraries (10-200 MB per file) it costs
0.02-0.4 s per file, hundreds of times the rest. New files and files whose size or mtime
changed are registered with `primary_file_sha256` NULL and the scan submits one `lora.hash`
job, whose id it reports (`library/hashing.py`). That job hashes every waiting file in path order (a few threads:
hashlib releases the GIL) and reports duplicates: a file whose sha256 an adapter registered
before it already has. A duplicate that nobody has touched since the scan registered it
(`updated_at` = `created_at`) is removed again, so the library ends as if it had never been
imported; one that was edited, activated or refreshed meanwhile is kept, its hash recorded and
reported. Both jobs' results are read with `GET /adapters/scan/{job_id}`.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts
from kiln.apps.lora.library.values import row_search_text, unique_words
from kiln.apps.lora.models import Adapter, AdapterTag, DuplicateFile
from kiln.core.db import new_id, new_ids, utcnow
from kiln.core.jobs import JobContext, job_handler

BATCH = 500
READ_SECONDS = 1.0
MAX_REPORTED = 200
ADAPTERS = Adapter.__table__
TAGS = AdapterTag.__table__
DUPLICATES = DuplicateFile.__table__

Found = tuple[str, frozenset[str]]  # a file's path and the names in its folder (for sidecars)
Read = tuple[str, dict[str, Any] | None, str | None]  # path, derived fields or None, error or None


def find_files(cfg: LoraSettings, folder: Path, recursive: bool) -> list[Found]:
    """The `.safetensors` files under `folder` (or in it only), each with the names beside it.

    One `os.scandir` per folder answers what each entry is from the listing itself (`d_type`):
    a walk by names then `os.path.islink` per file cost a system call per file, more than a
    tiny file's whole header read. Like `os.walk`: symlinked folders are not entered and
    unreadable folders are passed over; a symlinked file counts only if it resolves inside a root."""
    roots = cfg.allowed_roots()
    found: list[Found] = []
    pending = [os.fspath(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError:
            if not recursive:  # as os.listdir did; a walk (os.walk) passes unreadable folders over
                raise
            continue
        files = []
        for entry in entries:
            if not _is_dir(entry):
                files.append(entry)
            elif recursive and not entry.is_symlink():
                pending.append(entry.path)
        siblings = frozenset(entry.name for entry in files)
        for entry in files:
            if not entry.name.lower().endswith(".safetensors"):
                continue
            if entry.is_symlink():
                target = Path(entry.path).resolve()
                if not any(target.is_relative_to(r) for r in roots):
                    continue
            found.append((entry.path, siblings))
    found.sort(key=itemgetter(0))
    return found


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _read_batch(cfg: LoraSettings, files: list[Found]) -> list[Read]:
    """The first files of `files`: up to BATCH of them, fewer once READ_SECONDS have gone
    (an SDXL LoRA's 400 KB header takes milliseconds: rows and progress come every second)."""
    out: list[Read] = []
    deadline = time.monotonic() + READ_SECONDS
    for path, siblings in files[:BATCH]:
        if out and time.monotonic() > deadline:
            break
        try:
            facts = read_facts(path, max_header=cfg.max_header_bytes, sha256=False)
            out.append((path, adapter_fields(facts, siblings), None))
        except (InvalidAdapterFile, OSError) as exc:
            out.append((path, None, str(exc)))
    return out


DEFAULTS: dict[str, Any] = {
    "version": None,
    "canonical_version_name": None,
    "description": None,
    "author_username": None,
    "visibility": "Public",
    "published_at": None,
    "trained_words": [],
    "triggers": [],
    "activation_text": None,
    "archetype": None,
    "archetype_confidence": None,
    "sd_version": None,
    "nsfw_level": 0,
    "supports_generation": False,
    "stats": {},
    "extra": {},
    "file_stem": None,
    "alias": None,
    "primary_file_name": None,
    "primary_file_size_kb": None,
    "primary_file_sha256": None,
    "primary_file_download_url": None,
    "primary_file_local_path": None,
    "file_size": None,
    "file_mtime_ns": None,
    "base_model": None,
    "network_module": None,
    "network_dim": None,
    "network_alpha": None,
    "model_hash": None,
    "trigger_candidates": [],
    "header_metadata": {},
    "preview_path": None,
    "weight": 1.0,
    "active": False,
    "ordinal": None,
    "json_file_path": None,
    "json_file_mtime": None,
    "json_file_size": None,
}
# The tags of a file without any: one list for all of them, so the insert serialises it once
# (a value is serialised once per distinct object, see `_insert_rows`). Never mutated.
NO_TAGS: list[str] = []
# Derived values that say nothing (a refresh keeps the stored value): one tuple, not two new
# empty literals built per comparison, per field, per file.
NO_VALUE = (None, [], {})
# What a refresh reads of an adapter already registered under a scanned path.
KNOWN = (
    ADAPTERS.c.id,
    ADAPTERS.c.file_path,
    ADAPTERS.c.file_size,
    ADAPTERS.c.file_mtime_ns,
    ADAPTERS.c.primary_file_sha256,
    ADAPTERS.c.name,
    ADAPTERS.c.version,
    ADAPTERS.c.alias,
    ADAPTERS.c.file_stem,
    ADAPTERS.c.primary_file_name,
    ADAPTERS.c.tags,
    ADAPTERS.c.trained_words,
    ADAPTERS.c.triggers,
)

# A batch's lookups, built once with expanding parameters: `in_(list)` made a bound parameter
# object per path (500 per statement, three statements per batch) and defeated the SQL cache.
KNOWN_BY_PATH = select(*KNOWN).where(ADAPTERS.c.file_path.in_(bindparam("paths", expanding=True)))
# Copies found by an earlier hash job: still valid while the file is unchanged and the adapter
# it duplicates still has that hash.
COPIES_BY_PATH = (
    select(DUPLICATES, ADAPTERS.c.primary_file_sha256.label("twin_sha256"))
    .join(ADAPTERS, ADAPTERS.c.id == DUPLICATES.c.duplicate_of, isouter=True)
    .where(DUPLICATES.c.file_path.in_(bindparam("paths", expanding=True)))
)
NAMES_TAKEN = select(ADAPTERS.c.name, ADAPTERS.c.version_key).where(
    ADAPTERS.c.name.in_(bindparam("names", expanding=True))
)


def _tag_rows(adapter_id: str, name: str, tags: list[str]) -> list[dict[str, Any]]:
    return [
        {"adapter_id": adapter_id, "tag_norm": t.casefold()[:255], "tag": t[:255], "name_key": name.lower()}
        for t in tags
    ]


async def _insert_rows(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """`INSERT ... VALUES` for many rows of the same keys, as one driver executemany.

    SQLAlchemy's executemany builds every row's parameters through the compiled statement
    (~50 bind processors per adapter row, a JSON dump for each of the 7 JSON columns): that cost
    more than SQLite's insert with its indexes. The same processors are applied here, once per
    distinct value object (the batch's timestamp, the shared empty defaults); the SQL and its
    parameter order are SQLAlchemy's own compilation for this dialect."""
    conn = await session.connection()
    sql, steps = _compiled_insert(conn.dialect, table, tuple(rows[0]))
    if not steps:  # a named paramstyle or SQL-side defaults: the plain way
        await session.execute(insert(table), rows)
        return
    columns = []
    for key, process in steps:
        values = [row[key] for row in rows]
        if process is not None:
            ids = list(map(id, values))  # every value stays alive in `rows` meanwhile
            distinct = dict(zip(ids, values, strict=True))
            done = {i: None if value is None else process(value) for i, value in distinct.items()}
            values = list(map(done.__getitem__, ids))
        columns.append(values)
    params = list(zip(*columns, strict=True))
    await conn.exec_driver_sql(sql, params)


@functools.lru_cache(maxsize=32)
def _compiled_insert(dialect: Dialect, table: Table, keys: tuple[str, ...]) -> tuple[str, list[tuple[str, Any]]]:
    """The INSERT's SQL and, in parameter order, each key with its bind processor (compiling
    the 50-column statement took ~20 ms: once per process, not once per batch)."""
    compiled = insert(table).compile(dialect=dialect, column_keys=list(keys))
    order = compiled.positiontup
    if not order or not set(order) <= set(keys):
        return compiled.string, []
    return compiled.string, [(k, table.c[k].type.dialect_impl(dialect).bind_processor(dialect)) for k in order]


class _Batch:
    """One batch's statements, built from plain rows."""

    def __init__(self, cfg: LoraSettings, report: dict[str, Any], now: datetime, size: int):
        self.cfg, self.report, self.now = cfg, report, now
        self.ids = iter(new_ids(size))  # one per file at most: drawn by the new ones
        self.new_rows: list[dict[str, Any]] = []
        self.tag_rows: list[dict[str, Any]] = []
        self.retagged: list[str] = []
        self.updates: dict[frozenset[str], list[dict[str, Any]]] = {}
        self.stale_duplicates: list[str] = []

    def add_new(self, path: str, name: str, clean: dict[str, Any], tags: list[str]) -> None:
        row = {
            **DEFAULTS,
            **clean,
            "id": next(self.ids),
            "name": name,
            "file_path": path,
            "tags": tags,
            "created_at": self.now,
            "updated_at": self.now,
            "last_ingested_at": self.now,
        }
        row["version_key"] = row["version"] or ""
        row["search_text"] = row_search_text(row)
        self.new_rows.append(row)
        self.tag_rows += _tag_rows(row["id"], name, tags)
        self.report["imported"] += 1
        if row["primary_file_sha256"] is None:
            self.report["to_hash"] += 1

    def add_refresh(self, known: Any, clean: dict[str, Any], tags: list[str]) -> None:
        """Derived values replace stored ones where the file gives any; the user's tags stay
        unless the sidecars give tags. The sha256 stays while size and mtime are unchanged."""
        values = {**clean, "updated_at": self.now, "last_ingested_at": self.now}
        unchanged = (known.file_size, known.file_mtime_ns) == (clean["file_size"], clean["file_mtime_ns"])
        if not unchanged:
            values["primary_file_sha256"] = None
        if tags:
            values["tags"] = tags
            self.retagged.append(known.id)
            self.tag_rows += _tag_rows(known.id, known.name, tags)
        if "version" in values:
            values["version_key"] = values["version"]
        merged = {**known._mapping, **values}
        values["search_text"] = row_search_text(merged)
        if merged["primary_file_sha256"] is None:
            self.report["to_hash"] += 1
        self.updates.setdefault(frozenset(values), []).append({**values, "_id": known.id})
        self.report["updated"] += 1

    def add_known_duplicate(self, path: str, record: Any) -> None:
        self.report["duplicates"] += 1
        if len(self.report["duplicate_files"]) < MAX_REPORTED:
            self.report["duplicate_files"].append(
                {
                    "file": paths.relative_to_roots(self.cfg, Path(path)),
                    "duplicate_of": record.duplicate_of,
                    "sha256": record.sha256,
                }
            )

    async def write(self, session: AsyncSession) -> None:
        # SQLite: the search-index triggers stand aside for this transaction (migration 0017);
        # the index is filled for the whole batch at the end.
        deferred = session.get_bind().dialect.name == "sqlite" and bool(self.new_rows or self.updates)
        if deferred:
            await (await session.connection()).exec_driver_sql("INSERT INTO lora_search_deferred (deferred) VALUES (1)")
        if self.stale_duplicates:
            await session.execute(delete(DUPLICATES).where(DUPLICATES.c.file_path.in_(self.stale_duplicates)))
        if self.new_rows:
            await _insert_rows(session, ADAPTERS, self.new_rows)
        for keys, rows in self.updates.items():
            stmt = (
                update(ADAPTERS)
                .where(ADAPTERS.c.id == bindparam("_id"))
                .values({k: bindparam(k, type_=ADAPTERS.c[k].type) for k in keys})
            )
            await session.execute(stmt, rows)
        if self.retagged:
            await session.execute(delete(TAGS).where(TAGS.c.adapter_id.in_(self.retagged)))
        if self.tag_rows:
            await _insert_rows(session, TAGS, self.tag_rows)
        if deferred:
            refreshed = [row["_id"] for rows in self.updates.values() for row in rows]
            await _fill_search_index(session, [row["id"] for row in self.new_rows], refreshed)


async def _fill_search_index(session: AsyncSession, created: list[str], refreshed: list[str]) -> None:
    """What the SQLite triggers of 0012 do per row, set-based: an id-map row for each new
    adapter, and the FTS rows of new and refreshed adapters (a refreshed one's old row goes).
    SQLite only, so its own `?` placeholders: SQLAlchemy's compile of the 500-value IN lists and
    its per-row parameter dicts cost more than the statements' Python side needs."""
    conn = await session.connection()
    if created:
        await conn.exec_driver_sql("INSERT INTO lora_search (adapter_id) VALUES (?)", [(i,) for i in created])
    if refreshed:
        await conn.exec_driver_sql(
            "DELETE FROM lora_adapters_fts WHERE rowid IN "
            f"(SELECT id FROM lora_search WHERE adapter_id IN ({_marks(refreshed)}))",
            tuple(refreshed),
        )
    ids = created + refreshed
    await conn.exec_driver_sql(
        "INSERT INTO lora_adapters_fts (rowid, search_text) SELECT s.id, a.search_text "
        f"FROM lora_search s JOIN lora_adapters a ON a.id = s.adapter_id WHERE s.adapter_id IN ({_marks(ids)})",
        tuple(ids),
    )
    await conn.exec_driver_sql("DELETE FROM lora_search_deferred")


def _marks(values: list[str]) -> str:
    return ",".join("?" * len(values))


async def _store_batch(ctx: JobContext, cfg: LoraSettings, batch: list[Read], report: dict[str, Any]) -> None:
    good = [(p, f) for p, f, _ in batch if f is not None]
    for path, _, error in batch:
        if error is not None:
            report["invalid"] += 1
            if len(report["errors"]) < MAX_REPORTED:
                report["errors"].append({"file": paths.relative_to_roots(cfg, Path(path)), "error": error})
    if not good:
        return
    work = _Batch(cfg, report, utcnow(), len(good))
    async with ctx.session() as session:
        batch_paths = {"paths": [p for p, _ in good]}
        known = {row.file_path: row for row in await session.execute(KNOWN_BY_PATH, batch_paths)}
        copies = {row.file_path: row for row in await session.execute(COPIES_BY_PATH, batch_paths)}
        wanted = [f.get("alias") or f.get("title") or f["file_stem"] for _, f in good]
        names = set((await session.execute(NAMES_TAKEN, {"names": wanted})).all())
        for path, fields in good:
            title = fields.pop("title", None)
            tags = unique_words(fields.pop("tags", None) or []) or NO_TAGS
            clean = {k: v for k, v in fields.items() if v not in NO_VALUE}
            if path in known:
                work.add_refresh(known[path], clean, tags)
                continue
            copy = copies.get(path)
            if copy is not None:
                if (copy.file_size, copy.file_mtime_ns, copy.sha256) == (
                    clean["file_size"],
                    clean["file_mtime_ns"],
                    copy.twin_sha256,
                ):
                    work.add_known_duplicate(path, copy)
                    continue
                work.stale_duplicates.append(path)
            version_key = clean.get("version") or ""
            name = (fields.get("alias") or title or fields["file_stem"])[:512]
            if (name, version_key) in names:
                name = Path(paths.relative_to_roots(cfg, Path(path))).with_suffix("").as_posix()[:500]
                if (name, version_key) in names:
                    name = f"{name}-{new_id()[:8]}"
            names.add((name, version_key))
            work.add_new(path, name, clean, tags)
        await work.write(session)
        await session.commit()


@job_handler("lora.scan", surface="lora", max_attempts=1)
async def scan_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    cfg = lora_settings(ctx.kernel)
    folder = Path(payload["directory"])
    files = await asyncio.to_thread(find_files, cfg, folder, bool(payload.get("recursive", True)))
    report: dict[str, Any] = {
        "directory": paths.relative_to_roots(cfg, folder) or ".",
        "total_files": len(files),
        "imported": 0,
        "updated": 0,
        "invalid": 0,
        "errors": [],
        "duplicates": 0,
        "duplicate_files": [],
        "to_hash": 0,
        "hash_job_id": None,
    }
    await ctx.progress(0.0, f"found {len(files)} files")

    def read_from(position: int) -> asyncio.Future[list[Read]] | None:
        if position >= len(files):
            return None
        return asyncio.ensure_future(asyncio.to_thread(_read_batch, cfg, files[position : position + BATCH]))

    # The next batch is read (in a thread) while this one is written to the database.
    done = 0
    reading = read_from(0)
    try:
        while reading is not None:
            batch = await reading
            ctx.raise_if_cancelled()
            done += len(batch)
            reading = read_from(done)
            await _store_batch(ctx, cfg, batch, report)
            await ctx.progress(done / max(1, len(files)), f"{done}/{len(files)} files")
    finally:
        if reading is not None and not reading.done():
            reading.cancel()
    if report["to_hash"]:
        report["hash_job_id"] = (await ctx.kernel.jobs.submit("lora.hash", {})).id
    return report
