"""Run a conversion: recordings x shards spread over processes, results as plain data.

`run_conversion(paths, spec, output_dir, *, progress, should_cancel, max_workers)` returns
a `ConversionResult` listing every file written (dataset, manifest, report) with its role,
format, media type, size, episode and source recording. One recording with one shard runs
in the calling process; more work goes to a process pool (one window per task).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kiln.apps.robotics.assets.indexing import index_recording
from kiln.apps.robotics.conversion.job import Ticker, WindowJob, WindowOutcome, convert_window, plan_windows
from kiln.apps.robotics.conversion.pipeline import ConversionCancelled
from kiln.apps.robotics.conversion.rows import grid_origin
from kiln.apps.robotics.spec.migrate import load_spec, representation_policy
from kiln.apps.robotics.spec.models import ConversionSpec, ResampleStrategy

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
PoolFactory = Callable[..., Executor]
MEDIA_TYPES = {
    "parquet": "application/x-parquet",
    "tfrecord": "application/octet-stream",
    "json": "application/json",
    "md": "text/markdown",
}


@dataclass
class OutputFile:
    path: str
    relative_path: str
    role: str  # dataset | manifest | report
    format: str  # parquet | tfrecord | json | md
    media_type: str
    size_bytes: int
    episode_id: str
    source_path: str
    split: str
    shard_index: int
    rows: int | None


@dataclass
class ConversionResult:
    output_dir: str
    files: list[OutputFile]
    rows_written: int
    dropped_rows: int
    bad_records: int
    split_counts: dict[str, int]
    episodes: list[dict[str, Any]]
    representation_policy: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> dict[str, Any]:
        """Run-level summary (per-file manifests are the `manifest` role files)."""
        return {
            "rows_written": self.rows_written,
            "dropped_rows": self.dropped_rows,
            "bad_records": self.bad_records,
            "split_counts": self.split_counts,
            "episodes": self.episodes,
            "payload_representation": self.representation_policy,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["manifest"] = self.manifest
        return d


def _context() -> mp.context.BaseContext:
    # fork is fastest, but forking a threaded process can deadlock: spawn then
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("spawn")


_worker_state: dict[str, Any] = {}


def _init_worker(q: Any, cancel: Any) -> None:
    _worker_state["queue"], _worker_state["cancel"] = q, cancel


def _run_in_worker(job: WindowJob, key: int) -> WindowOutcome:
    q, cancel = _worker_state["queue"], _worker_state["cancel"]
    return convert_window(job, Ticker(lambda f: q.put((key, f)), cancel.is_set))


def build_jobs(paths: Sequence[str | Path], spec: ConversionSpec, output_dir: Path) -> list[WindowJob]:
    jobs: list[WindowJob] = []
    payload = spec.model_dump(mode="json", by_alias=True)
    n = spec.output.shards
    for i, p in enumerate(paths, start=1):
        origin = None
        windows: list[tuple[int | None, int | None]] = [(None, None)]
        if n > 1:
            idx = index_recording(p)
            if isinstance(spec.row_strategy, ResampleStrategy):
                origin = grid_origin(spec.row_strategy, {t.name: t.first_ns for t in idx.topics})
            windows = plan_windows(idx.start_ns, idx.end_ns, n, spec, origin)
        for k, w in enumerate(windows):
            jobs.append(WindowJob(str(Path(p).resolve()), f"episode_{i:04d}", payload, str(output_dir), w, k, n))
    return jobs


def run_conversion(
    paths: str | Path | Sequence[str | Path],
    spec: ConversionSpec | dict[str, Any],
    output_dir: str | Path,
    *,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    max_workers: int | None = None,
    pool_factory: PoolFactory | None = None,
) -> ConversionResult:
    """Convert recordings (one episode each) into dataset files under `output_dir`.

    Raises ConversionCancelled when `should_cancel()` turns true (partial files removed),
    ValueError subclasses for spec/recording problems (messages safe to show).
    `pool_factory(workers, mp_context=..., initializer=..., initargs=...)` makes the process pool
    (a job passes `ctx.process_pool`, whose processes a cancel kills); default ProcessPoolExecutor.
    """
    spec = spec if isinstance(spec, ConversionSpec) else load_spec(spec)
    path_list = [paths] if isinstance(paths, str | Path) else list(paths)
    if not path_list:
        raise ValueError("at least one recording is required")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda f, m: None)
    cancelled = should_cancel or (lambda: False)
    jobs = build_jobs(path_list, spec, out)
    if spec.output.filename_template and len(path_list) > 1 and "{episode_id}" not in spec.output.filename_template:
        raise ValueError("output.filename_template needs {episode_id} when converting several recordings")
    report(0.0, f"converting {len(path_list)} recording(s) in {len(jobs)} part(s)")
    workers = min(len(jobs), max_workers or os.cpu_count() or 1)
    if workers <= 1:
        outcomes = []
        for k, job in enumerate(jobs):
            label = f"{job.episode_id} shard {job.shard_index + 1}/{job.num_shards}"

            def tick(f: float, k: int = k, label: str = label) -> None:
                report((k + f) / len(jobs), label)

            outcomes.append(convert_window(job, Ticker(tick, cancelled)))
    else:
        outcomes = _run_pool(jobs, workers, report, cancelled, out, pool_factory or ProcessPoolExecutor)
    result = _collect(outcomes, spec, out)
    report(1.0, f"wrote {result.rows_written} rows")
    return result


def _run_pool(
    jobs: list[WindowJob], workers: int, report: ProgressFn, cancelled: CancelFn, out: Path, pool_factory: PoolFactory
) -> list[WindowOutcome]:
    ctx = _context()
    q, cancel = ctx.Queue(), ctx.Event()
    fractions = [0.0] * len(jobs)
    results: dict[int, WindowOutcome] = {}
    with pool_factory(workers, mp_context=ctx, initializer=_init_worker, initargs=(q, cancel)) as pool:
        futures = {pool.submit(_run_in_worker, job, k): k for k, job in enumerate(jobs)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                for fut in done:
                    k = futures[fut]
                    results[k] = fut.result()  # re-raises the worker's error
                    fractions[k] = 1.0
                while True:
                    try:
                        k, f = q.get_nowait()
                    except queue_mod.Empty:
                        break
                    fractions[k] = max(fractions[k], f)
                # A pool killed under us (the server stopping, which is not a cancel) cancels the
                # futures still queued; `wait` never counts those as done, so without this check
                # the loop would wait for them forever and hold the server's shutdown.
                if cancelled() or any(fut.cancelled() for fut in pending):
                    cancel.set()
                    raise ConversionCancelled("conversion cancelled")
                report(sum(fractions) / len(jobs), f"{len(results)}/{len(jobs)} parts done")
        except BaseException:
            cancel.set()
            # a cancelled future never finishes once its pool is dead: wait only for the running ones
            running = [fut for fut in pending if not fut.cancel()]
            wait(running)
            # drop what finished parts wrote, those that ended during that wait too: the run failed as a whole
            late = [fut.result() for fut in running if fut.exception() is None]
            for o in [*results.values(), *late]:
                for f in o.files:
                    Path(f["path"]).unlink(missing_ok=True)
            raise
    return [results[k] for k in range(len(jobs))]


def _collect(outcomes: list[WindowOutcome], spec: ConversionSpec, out: Path) -> ConversionResult:
    folder = out.resolve()  # the files' paths are resolved (a symlink on the way to `out` is followed)
    files: list[OutputFile] = []
    split_counts: dict[str, int] = {}
    episodes: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    for o in outcomes:
        ep = episodes.setdefault(
            o.episode_id,
            {
                "episode_id": o.episode_id,
                "source_path": o.path,
                "rows_written": 0,
                "dropped_rows": 0,
                "bad_records": 0,
                "mapping_resolved": o.mapping_resolved,
            },
        )
        ep["rows_written"] += o.rows_written
        ep["dropped_rows"] += o.dropped_rows
        ep["bad_records"] += o.bad_records
        for k, v in o.split_counts.items():
            split_counts[k] = split_counts.get(k, 0) + v
        warnings += [w for w in o.warnings if w not in warnings][:50]
        for f in o.files:
            p = Path(f["path"])
            files.append(
                OutputFile(
                    str(p),
                    str(p.relative_to(folder)),
                    f["role"],
                    f["format"],
                    MEDIA_TYPES.get(f["format"], "application/octet-stream"),
                    p.stat().st_size,
                    f["episode_id"],
                    f["source_path"],
                    f["split"],
                    f["shard_index"],
                    f["rows"],
                )
            )
    files.sort(key=lambda f: f.relative_path)
    return ConversionResult(
        str(out),
        files,
        sum(o.rows_written for o in outcomes),
        sum(o.dropped_rows for o in outcomes),
        sum(o.bad_records for o in outcomes),
        split_counts,
        list(episodes.values()),
        representation_policy(spec.output),
        warnings,
    )
