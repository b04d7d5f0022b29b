"""Directory import as an engine job (`lora.scan`): every `.safetensors` file under a library
folder becomes or refreshes an adapter, read from its header and sidecars, with progress.

Files are read in batches in a thread (header + sidecars + sha256); each batch is one
transaction. A file already registered (same path) is refreshed; a file whose sha256 another
adapter already has is reported as a duplicate and not imported twice; unreadable files are
reported as invalid and do not stop the scan. Symlinks that leave the roots are skipped.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, insert, select

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts
from kiln.apps.lora.library.service import _dedupe, fill_adapter, set_tags
from kiln.apps.lora.library.values import search_text
from kiln.apps.lora.models import Adapter, AdapterTag
from kiln.core.db import new_id, utcnow
from kiln.core.jobs import JobContext, job_handler

BATCH = 500
MAX_REPORTED = 200


def find_files(cfg: LoraSettings, folder: Path, recursive: bool) -> list[Path]:
    roots = cfg.allowed_roots()
    found: list[Path] = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for dirpath, _dirs, files in walker:
        for name in files:
            if not name.lower().endswith(".safetensors"):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if not any(target.is_relative_to(r) for r in roots):
                    continue
            found.append(path)
    found.sort()
    return found


def _read_batch(cfg: LoraSettings, files: list[Path]) -> list[tuple[Path, dict[str, Any] | None, str | None]]:
    out: list[tuple[Path, dict[str, Any] | None, str | None]] = []
    listings: dict[Path, set[str]] = {}
    for path in files:
        if path.parent not in listings:
            try:
                listings[path.parent] = set(os.listdir(path.parent))
            except OSError:
                listings[path.parent] = set()
        try:
            facts = read_facts(path, max_header=cfg.max_header_bytes)
            if facts.size == 0:
                raise InvalidAdapterFile("empty file")
            out.append((path, adapter_fields(facts, listings[path.parent]), None))
        except (InvalidAdapterFile, OSError) as exc:
            out.append((path, None, str(exc)))
    return out


DEFAULTS: dict[str, Any] = {
    "version": None, "canonical_version_name": None, "description": None, "author_username": None,
    "visibility": "Public", "published_at": None, "trained_words": [], "triggers": [], "activation_text": None,
    "archetype": None, "archetype_confidence": None, "sd_version": None, "nsfw_level": 0,
    "supports_generation": False, "stats": {}, "extra": {}, "file_stem": None, "alias": None,
    "primary_file_name": None, "primary_file_size_kb": None, "primary_file_sha256": None,
    "primary_file_download_url": None, "primary_file_local_path": None, "base_model": None, "network_module": None,
    "network_dim": None, "network_alpha": None, "model_hash": None, "trigger_candidates": [],
    "header_metadata": {}, "preview_path": None, "weight": 1.0, "active": False, "ordinal": None,
    "json_file_path": None, "json_file_mtime": None, "json_file_size": None,
}


def _new_row(path: Path, name: str, fields: dict[str, Any], tags: list[str], now: Any) -> dict[str, Any]:
    """A plain row for a bulk insert (no ORM objects: thousands of them cost more than the SQL)."""
    row = {**DEFAULTS, **fields, "id": new_id(), "name": name, "file_path": str(path), "tags": tags,
           "created_at": now, "updated_at": now, "last_ingested_at": now}
    row["version_key"] = row["version"] or ""
    row["search_text"] = search_text(SimpleNamespace(**row))
    return row


async def _store_batch(ctx: JobContext, cfg: LoraSettings, batch: list[tuple[Path, dict[str, Any] | None, str | None]],
                       report: dict[str, Any]) -> None:
    good = [(p, f) for p, f, _ in batch if f is not None]
    for path, _, error in batch:
        if error is not None:
            report["invalid"] += 1
            if len(report["errors"]) < MAX_REPORTED:
                report["errors"].append({"file": paths.relative_to_roots(cfg, path), "error": error})
    if not good:
        return
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    tag_rows: list[dict[str, Any]] = []
    async with ctx.session() as session:
        by_path = {a.file_path: a for a in (await session.scalars(
            select(Adapter).where(Adapter.file_path.in_([str(p) for p, _ in good])))).all()}
        hashes = [f["primary_file_sha256"] for _, f in good]
        by_hash = {h: i for h, i in (await session.execute(
            select(Adapter.primary_file_sha256, Adapter.id).where(Adapter.primary_file_sha256.in_(hashes)))).all()}
        names = {(n, v) for n, v in (await session.execute(
            select(Adapter.name, Adapter.version_key).where(Adapter.name.in_(
                [f.get("alias") or f.get("title") or f["file_stem"] for _, f in good])))).all()}
        for path, fields in good:
            fields = dict(fields)
            title = fields.pop("title", None)
            tags = _dedupe(fields.pop("tags", None) or [])
            existing = by_path.get(str(path))
            twin = by_hash.get(fields["primary_file_sha256"])
            if existing is None and twin is not None:
                report["duplicates"] += 1
                if len(report["duplicate_files"]) < MAX_REPORTED:
                    report["duplicate_files"].append({"file": paths.relative_to_roots(cfg, path),
                                                      "duplicate_of": twin, "sha256": fields["primary_file_sha256"]})
                continue
            clean = {k: v for k, v in fields.items() if v not in (None, [], {})}
            if existing is not None:
                fill_adapter(existing, {**clean, "last_ingested_at": now, "updated_at": now})
                await session.execute(delete(AdapterTag).where(AdapterTag.adapter_id == existing.id))
                await session.flush()
                set_tags(session, existing, tags)
                fill_adapter(existing, {})
                report["updated"] += 1
                continue
            name = (fields.get("alias") or title or fields["file_stem"])[:512]
            version_key = clean.get("version") or ""
            if (name, version_key) in names:
                name = Path(paths.relative_to_roots(cfg, path)).with_suffix("").as_posix()[:500]
                if (name, version_key) in names:
                    name = f"{name}-{fields['primary_file_sha256'][:8]}"
            names.add((name, version_key))
            row = _new_row(path, name, clean, tags, now)
            new_rows.append(row)
            tag_rows += [{"adapter_id": row["id"], "tag_norm": t.casefold()[:255], "tag": t[:255],
                          "name_key": name.lower()} for t in tags]
            by_hash[fields["primary_file_sha256"]] = row["id"]
            report["imported"] += 1
        if new_rows:
            await session.execute(insert(Adapter.__table__), new_rows)
        if tag_rows:
            await session.execute(insert(AdapterTag.__table__), tag_rows)
        await session.commit()


@job_handler("lora.scan", surface="lora", max_attempts=1)
async def scan_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    cfg = lora_settings(ctx.kernel)
    folder = Path(payload["directory"])
    files = await asyncio.to_thread(find_files, cfg, folder, bool(payload.get("recursive", True)))
    report: dict[str, Any] = {"directory": paths.relative_to_roots(cfg, folder) or ".", "total_files": len(files),
                              "imported": 0, "updated": 0, "duplicates": 0, "invalid": 0,
                              "errors": [], "duplicate_files": []}
    await ctx.progress(0.0, f"found {len(files)} files")
    # The next batch is read (in a thread) while this one is written to the database.
    reading = asyncio.ensure_future(asyncio.to_thread(_read_batch, cfg, files[:BATCH]))
    try:
        for start in range(0, len(files), BATCH):
            batch = await reading
            ctx.raise_if_cancelled()
            following = files[start + BATCH:start + 2 * BATCH]
            if following:
                reading = asyncio.ensure_future(asyncio.to_thread(_read_batch, cfg, following))
            await _store_batch(ctx, cfg, batch, report)
            done = min(len(files), start + BATCH)
            await ctx.progress(done / max(1, len(files)), f"{done}/{len(files)} files")
    finally:
        if not reading.done():
            reading.cancel()
    return report
