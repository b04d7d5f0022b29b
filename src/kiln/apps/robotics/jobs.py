"""Robotics job handlers: `robotics.index` (one asset) and `robotics.convert` (one run).

Both work off files on the local disk, so they run the blocking domain code in a thread;
the conversion engine fans big work out to its own processes and stops between chunks
when `should_cancel` turns true.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from kiln.apps.robotics.assets.indexing import index_recording
from kiln.apps.robotics.assets.registration import readable_path
from kiln.apps.robotics.common import RoboticsError
from kiln.apps.robotics.config import reading_roots, robotics_settings
from kiln.apps.robotics.conversion import ConversionCancelled, run_conversion
from kiln.apps.robotics.conversion.outputs import refresh_run
from kiln.apps.robotics.models import (
    FAILED,
    INDEXED,
    INDEXING,
    PENDING,
    Asset,
    AssetMetadata,
    ConversionRun,
    OutputArtifact,
)
from kiln.apps.robotics.reading.reader import RecordingError
from kiln.apps.robotics.spec.migrate import load_spec
from kiln.core.db import utcnow
from kiln.core.jobs import JobCancelled, JobContext, job_handler


def conversion_workers(kernel: Any) -> int:
    """Processes one conversion may use: KILN_ROBOTICS_CONVERSION_WORKERS, else KILN_CPU_WORKERS,
    else every core (0 means "all" for both settings)."""
    return robotics_settings(kernel).conversion_workers or kernel.settings.cpu_workers or os.cpu_count() or 1


class RoboticsJobError(Exception):
    """A failure whose message is meant for the user (stored as the job's error)."""


def _dt(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def _store_metadata(ctx: JobContext, asset_id: str, meta: dict[str, Any] | None, error: str | None) -> None:
    now = utcnow()
    async with ctx.session() as s:
        asset = await s.get(Asset, asset_id)
        if asset is None:
            return
        row = await s.get(AssetMetadata, asset_id)
        if row is None:
            row = AssetMetadata(
                asset_id=asset_id,
                topic_count=0,
                message_count=0,
                sensor_types=[],
                topics=[],
                raw_metadata={},
                created_at=now,
            )
            s.add(row)
        if meta is not None:
            row.duration, row.start_time = meta["duration"], _dt(meta["start_time"])
            row.end_time, row.topic_count, row.message_count = (
                _dt(meta["end_time"]),
                meta["topic_count"],
                meta["message_count"],
            )
            row.sensor_types, row.topics = meta["sensor_types"], meta["topics"]
            row.default_episode = meta["default_episode"]
            row.visualization_summary, row.raw_metadata = meta.get("visualization_summary"), meta["raw_metadata"]
            asset.indexing_status, asset.last_indexed_at = INDEXED, now
        else:
            asset.indexing_status = FAILED
        row.indexing_error, row.updated_at, asset.updated_at = error, now, now
        await s.commit()


async def _set_status(ctx: JobContext, asset_id: str, status: str) -> str | None:
    async with ctx.session() as s:
        asset = await s.get(Asset, asset_id)
        if asset is None:
            return None
        before = asset.indexing_status
        asset.indexing_status, asset.updated_at = status, utcnow()
        await s.commit()
        return before


@job_handler("robotics.index", surface="robotics", max_attempts=1)
async def index_asset(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    asset_id = payload["asset_id"]
    async with ctx.session() as s:
        asset = await s.get(Asset, asset_id)
        if asset is None:
            raise RoboticsJobError(f"asset not found: {asset_id}")
        path = asset.file_path
    try:
        path = readable_path(path, reading_roots(ctx.kernel))
    except RoboticsError as exc:
        await _store_metadata(ctx, asset_id, None, str(exc))
        raise RoboticsJobError(str(exc)) from None
    robotics_settings(ctx.kernel).apply_read_limits()
    before = await _set_status(ctx, asset_id, INDEXING)
    await ctx.progress(0.1, "reading the recording's index")
    try:
        idx = await asyncio.to_thread(index_recording, path)
    except (JobCancelled, asyncio.CancelledError):
        await _set_status(ctx, asset_id, before if before in (PENDING, FAILED, INDEXED) else PENDING)
        raise
    except Exception as exc:  # any failure ends `failed` with the reason (never stuck `indexing`)
        error = (
            str(exc)
            if isinstance(exc, RecordingError | OSError)
            else f"cannot index {Path(path).name}: {type(exc).__name__}: {exc}"
        )
        await _store_metadata(ctx, asset_id, None, error)
        raise RoboticsJobError(error) from None
    meta = idx.to_metadata(asset_id)
    await _store_metadata(ctx, asset_id, meta, None)
    return {
        "topic_count": meta["topic_count"],
        "message_count": meta["message_count"],
        "index_source": idx.index_source,
    }


@job_handler("robotics.convert", surface="robotics", max_attempts=3)
async def convert(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    run_id = payload["run_id"]
    async with ctx.session() as s:
        run = await s.get(ConversionRun, run_id)
        if run is None:
            raise RoboticsJobError(f"conversion not found: {run_id}")
        paths, spec_payload, out_dir = list(run.asset_paths), run.config["spec"], Path(run.output_dir)
        # a retry starts from a clean folder: forget what an earlier attempt wrote
        await s.execute(delete(OutputArtifact).where(OutputArtifact.conversion_run_id == run_id))
        await s.commit()
    try:
        roots = reading_roots(ctx.kernel)
        paths = [readable_path(p, roots) for p in paths]
    except RoboticsError as exc:
        raise RoboticsJobError(str(exc)) from None
    await asyncio.to_thread(shutil.rmtree, out_dir, True)
    robotics_settings(ctx.kernel).apply_read_limits()
    spec = load_spec(spec_payload)
    loop = asyncio.get_running_loop()

    def progress(fraction: float, message: str) -> None:
        # called from the conversion thread; progress writes happen on the event loop
        asyncio.run_coroutine_threadsafe(_report(ctx, fraction, message), loop)

    await ctx.progress(0.0, "starting conversion")
    try:
        result = await ctx.run_blocking(
            run_conversion,
            paths,
            spec,
            out_dir,
            progress=progress,
            should_cancel=ctx.cancelled.is_set,
            max_workers=conversion_workers(ctx.kernel),
            pool_factory=ctx.process_pool,
        )
    except ConversionCancelled:
        raise JobCancelled("conversion cancelled") from None
    except (ValueError, RecordingError, OSError) as exc:
        raise RoboticsJobError(f"conversion failed: {exc}") from None
    ctx.raise_if_cancelled()
    by_path = dict(zip(paths, payload.get("target_asset_ids") or [], strict=False))
    attribution = {str(Path(f.path)): by_path.get(f.source_path) for f in result.files}
    async with ctx.session() as s:
        run = await s.get(ConversionRun, run_id)
        if run is not None:
            await refresh_run(s, run, {k: v for k, v in attribution.items() if v})
            run.output_paths = sorted(f.path for f in result.files)
            run.updated_at = utcnow()
            await s.commit()
    return {
        "rows_written": result.rows_written,
        "dropped_rows": result.dropped_rows,
        "files": len(result.files),
        "warnings": result.warnings[:20],
    }


async def _report(ctx: JobContext, fraction: float, message: str) -> None:
    try:
        await ctx.progress(min(fraction, 0.99), message)
    except JobCancelled:
        pass  # the conversion thread sees `should_cancel` and stops on its own
