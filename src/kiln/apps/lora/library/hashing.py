"""`lora.hash`: the whole-file sha256 of every adapter the directory scan registered without one.

The scan (`library/scan.py`) leaves `primary_file_sha256` NULL for new and changed files and
submits this job. It hashes every waiting file in path order, a few threads at a time (hashlib
releases the GIL), and reports duplicates: a file whose sha256 an adapter registered before it
already has. A duplicate nobody has touched since the scan registered it (`updated_at` =
`created_at`) is removed again and remembered in `lora_duplicate_files`, so the next scan skips
it; one edited, activated or refreshed meanwhile is kept, its hash recorded and reported.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import hash_rest, open_regular
from kiln.apps.lora.library.scan import MAX_REPORTED
from kiln.apps.lora.models import Adapter, DuplicateFile
from kiln.core.jobs import JobContext, job_handler

HASH_BATCH = 500
HASH_BATCH_BYTES = 512 * 1024 * 1024  # a batch of big files still commits and reports every ~second
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
ADAPTERS = Adapter.__table__
DUPLICATES = DuplicateFile.__table__


def _pending() -> Any:
    return ADAPTERS.c.primary_file_sha256.is_(None) & ADAPTERS.c.file_size.is_not(None)


def _hash_file(
    cfg: LoraSettings, path: str, size: int, mtime_ns: int | None, stop: Callable[[], bool]
) -> tuple[str | None, str | None]:
    """(sha256, None) or (None, why not). A file changed since the scan is left to the next
    scan (its header may have changed too); one that now resolves outside the roots is not read."""
    try:
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in cfg.allowed_roots()):
            return None, "file now resolves outside the configured LoRA folders"
        fh, stat = open_regular(path)
        with fh:
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                return None, "file changed since the scan; scan again"
            hasher = hashlib.sha256()
            hash_rest(fh, hasher, stop)
        return hasher.hexdigest(), None
    except InterruptedError:
        return None, "hashing stopped"
    except (OSError, RuntimeError) as exc:
        return None, f"file not readable: {getattr(exc, 'strerror', None) or 'error'}"


def _first_bytes(rows: list[Any], limit: int) -> list[Any]:
    """The leading rows whose files add up to at most `limit` bytes (at least one row)."""
    total = 0
    for count, row in enumerate(rows):
        total += row.file_size or 0
        if count and total > limit:
            return rows[:count]
    return rows


def _hash_files(cfg: LoraSettings, rows: list[Any], stop: Callable[[], bool]) -> list[tuple[str | None, str | None]]:
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="lora-hash") as pool:
        return list(pool.map(lambda r: _hash_file(cfg, r.file_path, r.file_size, r.file_mtime_ns, stop), rows))


async def _store_hashes(
    ctx: JobContext,
    cfg: LoraSettings,
    rows: list[Any],
    digests: list[tuple[str | None, str | None]],
    report: dict[str, Any],
) -> None:
    async with ctx.session() as session:
        found = [d for d, _ in digests if d is not None]
        twins = (
            dict(
                (
                    await session.execute(
                        select(ADAPTERS.c.primary_file_sha256, ADAPTERS.c.id).where(
                            ADAPTERS.c.primary_file_sha256.in_(found)
                        )
                    )
                ).all()
            )
            if found
            else {}
        )
        hashed: list[dict[str, Any]] = []
        removed: list[str] = []
        copies: list[dict[str, Any]] = []
        for row, (digest, error) in zip(rows, digests, strict=True):
            if digest is None:
                report["failed"] += 1
                if len(report["errors"]) < MAX_REPORTED:
                    report["errors"].append({"file": paths.relative_to_roots(cfg, Path(row.file_path)), "error": error})
                continue
            twin = twins.get(digest)
            untouched = row.created_at == row.updated_at
            if twin is not None and twin != row.id:
                report["duplicates"] += 1
                if len(report["duplicate_files"]) < MAX_REPORTED:
                    report["duplicate_files"].append(
                        {
                            "file": paths.relative_to_roots(cfg, Path(row.file_path)),
                            "adapter_id": row.id,
                            "duplicate_of": twin,
                            "sha256": digest,
                            "removed": untouched,
                        }
                    )
                if untouched:
                    removed.append(row.id)
                    copies.append(
                        {
                            "file_path": row.file_path,
                            "file_size": row.file_size,
                            "file_mtime_ns": row.file_mtime_ns,
                            "sha256": digest,
                            "duplicate_of": twin,
                        }
                    )
                    continue
            else:
                twins[digest] = row.id
            hashed.append({"_id": row.id, "_size": row.file_size, "_mtime": row.file_mtime_ns, "sha": digest})
        if hashed:
            # Only if the row still describes the file that was hashed (a re-scan may have run).
            await session.execute(
                update(ADAPTERS)
                .where(
                    ADAPTERS.c.id == bindparam("_id"),
                    ADAPTERS.c.file_size == bindparam("_size"),
                    ADAPTERS.c.file_mtime_ns == bindparam("_mtime"),
                )
                .values(primary_file_sha256=bindparam("sha")),
                hashed,
            )
        if removed:
            # Still untouched: an adapter edited or activated meanwhile stays (hashed by the next job).
            gone = await session.execute(
                delete(ADAPTERS).where(ADAPTERS.c.id.in_(removed), ADAPTERS.c.updated_at == ADAPTERS.c.created_at)
            )
            report["removed"] += gone.rowcount
            copied = [c["file_path"] for c in copies]
            await session.execute(delete(DUPLICATES).where(DUPLICATES.c.file_path.in_(copied)))
            await session.execute(insert(DUPLICATES), copies)
        report["hashed"] += len(hashed)
        await session.commit()


@job_handler("lora.hash", surface="lora", max_attempts=1)
async def hash_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Hash every adapter file waiting for its sha256, in path order, and report duplicates."""
    cfg = lora_settings(ctx.kernel)
    async with ctx.session() as session:
        total = await session.scalar(select(func.count()).select_from(ADAPTERS).where(_pending())) or 0
    report: dict[str, Any] = {
        "to_hash": total,
        "hashed": 0,
        "duplicates": 0,
        "removed": 0,
        "failed": 0,
        "errors": [],
        "duplicate_files": [],
    }
    await ctx.progress(0.0, f"{total} files to hash")
    columns = (
        ADAPTERS.c.id,
        ADAPTERS.c.file_path,
        ADAPTERS.c.file_size,
        ADAPTERS.c.file_mtime_ns,
        ADAPTERS.c.created_at,
        ADAPTERS.c.updated_at,
    )
    after, done = "", 0
    while True:
        async with ctx.session() as session:
            rows = (
                await session.execute(
                    select(*columns)
                    .where(_pending(), ADAPTERS.c.file_path > after)
                    .order_by(ADAPTERS.c.file_path)
                    .limit(HASH_BATCH)
                )
            ).all()
        if not rows:
            break
        rows = _first_bytes(rows, HASH_BATCH_BYTES)
        after = rows[-1].file_path
        digests = await ctx.run_blocking(_hash_files, cfg, rows, ctx.cancelled.is_set)
        ctx.raise_if_cancelled()
        await _store_hashes(ctx, cfg, rows, digests, report)
        done += len(rows)
        await ctx.progress(min(1.0, done / max(1, total)), f"{done}/{total} files hashed")
    return report
