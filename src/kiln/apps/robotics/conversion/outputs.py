"""Output artifacts: register a run's files, keep rows in step with the disk, list and serve.

The refresh compares each finished run's folder with its rows and writes only what
changed: a vanished file (or a deleted folder) becomes `missing` with size 0, a file that
came back or changed is `ready` again with its new size, a new file becomes an artifact at
once. Unchanged rows are not touched, so reading never bumps timestamps.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.common import NotFound, RoboticsError
from kiln.apps.robotics.models import ConversionRun, JobAsset, OutputArtifact
from kiln.apps.robotics.views import output_detail, output_summary
from kiln.core.db import new_id, utcnow
from kiln.core.jobs.models import SUCCEEDED, Job

_MEDIA = {
    "parquet": "application/x-parquet",
    "tfrecord": "application/octet-stream",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "md": "text/markdown",
}
_MANIFEST_LIMIT = 8 * 1024 * 1024  # a manifest bigger than this is not parsed into metadata


def classify(name: str) -> tuple[str, str, str]:
    """(format, role, media type) of an output file, by its name."""
    lower = name.lower()
    if lower.endswith(".manifest.json"):
        fmt, role = "json", "manifest"
    elif lower.endswith(".report.md"):
        fmt, role = "md", "report"
    else:
        ext = Path(lower).suffix.lstrip(".")
        for marker in (".tfrecord", ".parquet"):  # sharded/gzipped names such as x.tfrecord.gz
            if marker in lower:
                ext = marker.lstrip(".")
        fmt = ext or "unknown"
        role = "dataset" if fmt in ("parquet", "tfrecord") else "sidecar"
    media = _MEDIA.get(fmt) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return fmt, role, media


def _manifest_for(path: Path) -> Path:
    if path.name.lower().endswith(".manifest.json"):
        return path
    stem = path.name
    for suffix in (".gz", ".parquet", ".tfrecord"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return path.with_name(stem + ".manifest.json") if stem != path.name else path.with_suffix(".manifest.json")


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > _MANIFEST_LIMIT:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    payload = (data.get("conversion") or {}).get("payload_representation")
    if payload is not None and "payload_representation" not in data:
        data = {**data, "payload_representation": payload}  # hoisted for clients, like the reference
    return data


def _metadata(path: Path) -> tuple[dict[str, Any], bool, bool]:
    """(metadata, manifest_available, report_available) for one file."""
    manifest_path = _manifest_for(path)
    manifest = _read_manifest(manifest_path) if manifest_path.exists() else None
    report = (
        path.name.lower().endswith(".report.md")
        or manifest_path.with_name(manifest_path.name.replace(".manifest.json", ".report.md")).exists()
    )
    if path.name.lower().endswith(".report.md"):
        return {}, False, True
    return ({"manifest": manifest} if manifest is not None else {}), manifest is not None, report


def _scan(folder: Path) -> dict[str, int]:
    """relative path -> size of every file under a run folder ({} if the folder is gone)."""
    found: dict[str, int] = {}
    if not folder.is_dir():
        return found
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            try:
                found[str(p.relative_to(folder))] = p.stat().st_size
            except OSError:
                continue
    return found


async def refresh_run(session: AsyncSession, run: ConversionRun, attribution: dict[str, str] | None = None) -> bool:
    """Bring one run's artifact rows in line with its folder; returns whether anything changed."""
    folder = Path(run.output_dir)
    on_disk = await asyncio.to_thread(_scan, folder)
    rows = {
        o.output_path: o
        for o in await session.scalars(select(OutputArtifact).where(OutputArtifact.conversion_run_id == run.id))
    }
    now, changed = utcnow(), False
    for art in rows.values():
        rel = str(Path(art.output_path).relative_to(folder)) if art.output_path.startswith(str(folder)) else None
        size = on_disk.get(rel) if rel is not None else None
        if size is None:
            if art.availability_status != "missing" or art.size_bytes != 0:
                art.availability_status, art.size_bytes, art.updated_at, changed = "missing", 0, now, True
        elif art.availability_status != "ready" or art.size_bytes != size:
            meta, has_manifest, has_report = await asyncio.to_thread(_metadata, Path(art.output_path))
            art.availability_status, art.size_bytes, art.metadata_json = "ready", size, meta
            art.manifest_available, art.report_available, art.updated_at, changed = has_manifest, has_report, now, True
    single = run.asset_ids[0] if len(run.asset_ids or []) == 1 else None
    for rel, size in sorted(on_disk.items()):
        path = folder / rel
        if str(path) in rows:
            continue
        fmt, role, media = classify(path.name)
        meta, has_manifest, has_report = await asyncio.to_thread(_metadata, path)
        source = (attribution or {}).get(str(path)) or single
        session.add(
            OutputArtifact(
                id=new_id(),
                conversion_run_id=run.id,
                source_asset_id=source,
                source_asset_path=_asset_path(run, source),
                saved_config_id=run.saved_config_id,
                output_path=str(path),
                relative_path=rel,
                file_name=path.name,
                format=fmt,
                role=role,
                media_type=media,
                size_bytes=size,
                availability_status="ready",
                manifest_available=has_manifest,
                report_available=has_report,
                metadata_json=meta,
                created_at=now,
                updated_at=now,
            )
        )
        changed = True
    return changed


def _asset_path(run: ConversionRun, asset_id: str | None) -> str | None:
    if asset_id is None or asset_id not in (run.asset_ids or []):
        return None
    return (run.asset_paths or [None])[run.asset_ids.index(asset_id)]


_SETTLE_NS = 2_000_000_000  # a folder younger than this is scanned again (coarse fs clocks)


def _changed_folders(runs: list[tuple[str, str, int | None]]) -> dict[str, int | None]:
    """run id -> the mtime to remember (None: too young to trust) for runs whose folder changed.

    A folder's mtime changes whenever a file is added, removed or renamed in it, so a folder
    whose mtime is the one remembered needs no scan."""
    now = time.time_ns()
    out: dict[str, int | None] = {}
    for run_id, folder, seen in runs:
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            mtime = -1
        if seen is None or seen != mtime:
            out[run_id] = None if mtime >= 0 and now - mtime < _SETTLE_NS else mtime
    return out


async def refresh_outputs(session: AsyncSession, *, run_id: str | None = None, asset_id: str | None = None) -> None:
    """Bring succeeded runs (or the ones a filter names) in line with their folders. Only
    folders whose mtime changed since their rows last matched are scanned; only changes are written."""
    q = (
        select(ConversionRun.id, ConversionRun.output_dir, ConversionRun.outputs_mtime_ns)
        .join(Job, Job.id == ConversionRun.job_id)
        .where(Job.status == SUCCEEDED)
    )
    if run_id:
        q = q.where(ConversionRun.id == run_id)
    if asset_id:
        q = q.where(ConversionRun.job_id.in_(select(JobAsset.job_id).where(JobAsset.asset_id == asset_id)))
    runs = [tuple(r) for r in (await session.execute(q)).all()]
    todo = await asyncio.to_thread(_changed_folders, runs)
    changed = False
    ids = list(todo)
    for k in range(0, len(ids), 500):
        for run in list(await session.scalars(select(ConversionRun).where(ConversionRun.id.in_(ids[k : k + 500])))):
            changed = await refresh_run(session, run) or changed
            if run.outputs_mtime_ns != todo[run.id]:
                run.outputs_mtime_ns, changed = todo[run.id], True
    if changed:
        try:
            await session.commit()
        except IntegrityError:  # a concurrent request registered the same new file first
            await session.rollback()


def _lower(params: dict[str, str], key: str) -> str | None:
    v = (params.get(key) or "").strip()
    return v.lower() if v and key in ("format", "role", "availability") else v or None


def _int(params: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = (params.get(key) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RoboticsError(f"{key} must be an integer between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise RoboticsError(f"{key} must be between {lo} and {hi}, got {value}")
    return value


async def list_outputs(session: AsyncSession, params: dict[str, str], base: str = "") -> list[dict[str, Any]]:
    limit, offset = _int(params, "limit", 100, 1, 500), _int(params, "offset", 0, 0, 10**9)
    run_id, asset_id = _lower(params, "conversion_id"), _lower(params, "asset_id")
    await refresh_outputs(session, run_id=run_id, asset_id=asset_id)
    q = select(OutputArtifact, ConversionRun).outerjoin(
        ConversionRun, ConversionRun.id == OutputArtifact.conversion_run_id
    )
    for key, col in (
        ("format", OutputArtifact.format),
        ("role", OutputArtifact.role),
        ("availability", OutputArtifact.availability_status),
    ):
        value = _lower(params, key)
        if value:
            q = q.where(col == value)
    if run_id:
        q = q.where(OutputArtifact.conversion_run_id == run_id)
    if asset_id:
        q = q.where(
            or_(
                OutputArtifact.source_asset_id == asset_id,
                (OutputArtifact.source_asset_id.is_(None))
                & (ConversionRun.job_id.in_(select(JobAsset.job_id).where(JobAsset.asset_id == asset_id))),
            )
        )
    search = _lower(params, "search")
    if search:
        s = search.lower()
        q = q.where(
            or_(
                *(
                    c.contains(s, autoescape=True)
                    for c in (
                        OutputArtifact.file_name,
                        OutputArtifact.relative_path,
                        OutputArtifact.format,
                        OutputArtifact.role,
                        OutputArtifact.conversion_run_id,
                    )
                )
            )
        )
    q = q.order_by(OutputArtifact.created_at.desc(), OutputArtifact.id.desc()).limit(limit).offset(offset)
    return [output_summary(o, r, base) for o, r in (await session.execute(q)).all()]


async def get_output(session: AsyncSession, output_id: str) -> tuple[OutputArtifact, ConversionRun | None]:
    art = await session.get(OutputArtifact, output_id)
    if art is None:
        raise NotFound(f"output artifact not found: {output_id}")
    run = await session.get(ConversionRun, art.conversion_run_id) if art.conversion_run_id else None
    if run is not None:
        job = await session.get(Job, run.job_id) if run.job_id else None
        if job is not None and job.status == SUCCEEDED and await refresh_run(session, run):
            await session.commit()
            await session.refresh(art)
    return art, run


async def output_detail_by_id(session: AsyncSession, output_id: str, base: str = "") -> dict[str, Any]:
    art, run = await get_output(session, output_id)
    return output_detail(art, run, base)


async def content_source(session: AsyncSession, output_id: str) -> tuple[Path, str, str]:
    """(path, media type, file name) of an artifact's content; 404 when it is not on disk."""
    art, run = await get_output(session, output_id)
    path = Path(art.output_path)
    ok = run is not None and await asyncio.to_thread(_servable, path, Path(run.output_dir))
    if art.availability_status != "ready" or not ok:
        raise NotFound(f"output artifact content is unavailable: {output_id}")
    return path, art.media_type, art.file_name


def _servable(path: Path, run_dir: Path) -> bool:
    """A regular file that really lies inside its run folder (no symlink escapes)."""
    return path.resolve().is_relative_to(run_dir.resolve()) and path.is_file()
