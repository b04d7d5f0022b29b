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
from typing import Any

from sqlalchemy import delete, select

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.library import paths
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts
from kiln.apps.lora.library.service import _dedupe, fill_adapter, set_tags
from kiln.apps.lora.models import Adapter, AdapterTag
from kiln.core.db import utcnow
from kiln.core.jobs import JobContext, job_handler

BATCH = 200
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
    for path in files:
        try:
            if path.stat().st_size == 0:
                raise InvalidAdapterFile("empty file")
            out.append((path, adapter_fields(read_facts(path, max_header=cfg.max_header_bytes)), None))
        except (InvalidAdapterFile, OSError) as exc:
            out.append((path, None, str(exc)))
    return out


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
    async with ctx.session() as session:
        by_path = {a.file_path: a for a in (await session.scalars(
            select(Adapter).where(Adapter.file_path.in_([str(p) for p, _ in good])))).all()}
        hashes = [f["primary_file_sha256"] for _, f in good]
        by_hash = {h: (i, fp) for h, i, fp in (await session.execute(
            select(Adapter.primary_file_sha256, Adapter.id, Adapter.file_path)
            .where(Adapter.primary_file_sha256.in_(hashes)))).all()}
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
                                                      "duplicate_of": twin[0], "sha256": fields["primary_file_sha256"]})
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
            adapter = Adapter(file_path=str(path), name=name, created_at=now, updated_at=now, last_ingested_at=now,
                              tags=[], trained_words=[], triggers=[], stats={}, extra={}, weight=1.0, active=False,
                              visibility="Public", nsfw_level=0, supports_generation=False)
            fill_adapter(adapter, clean)
            session.add(adapter)
            by_hash[fields["primary_file_sha256"]] = (adapter.id, str(path))
            await session.flush()
            set_tags(session, adapter, tags)
            fill_adapter(adapter, {})
            report["imported"] += 1
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
    for start in range(0, len(files), BATCH):
        ctx.raise_if_cancelled()
        batch = await asyncio.to_thread(_read_batch, cfg, files[start:start + BATCH])
        await _store_batch(ctx, cfg, batch, report)
        done = min(len(files), start + BATCH)
        await ctx.progress(done / max(1, len(files)), f"{done}/{len(files)} files")
    return report
