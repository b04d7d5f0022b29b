"""Starting runs and waiting for them: plain functions, no FastAPI.

A run is one `arted_runs` row plus one `arted.run` engine job, written in one transaction; its
`run_id` is also the execution-history id. The synchronous contract waits on the job's
`job.updated` events (subscribed before the job is kicked, so none is missed).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from types import SimpleNamespace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.arted.config import ArtedSettings
from kiln.apps.arted.configs.registry import Config, Registry
from kiln.apps.arted.errors import ArtedError
from kiln.apps.arted.models import FAILED, IN_PROGRESS, QUEUED, Run
from kiln.apps.arted.pipeline.recorder import opening
from kiln.apps.arted.pipeline.safety import LEVELS
from kiln.core.db import utcnow
from kiln.core.jobs.models import FINISHED, RUNNING, SUCCEEDED
from kiln.providers.config import ProviderSettings

JOB_KIND = "arted.run"
RUNS = Run.__table__
MAX_SEED = 2**63 - 1
# What an answer reads of the run as it was created; the rest comes with the job's end.
_ANSWER_FIELDS = ("id", "config_id", "input_text", "execution_mode", "safety_level", "options")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    return _CONTROL.sub("", text)


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ArtedError(400, f"Unknown safety_level {level!r}", details={"valid_levels": list(LEVELS)})
    return level


def check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ArtedError(400, "seed must be an integer from 0 to 2^63-1", details={"seed": str(seed)[:40]})
    return seed


def check_text(text: str, cfg: ArtedSettings, field: str = "input_text") -> str:
    text = clean(text).strip()
    if not text:
        raise ArtedError(400, f"{field} is required")
    if len(text) > cfg.max_input_chars:
        raise ArtedError(413, f"{field} is longer than {cfg.max_input_chars} characters")
    return text


def get_config(reg: Registry, config_id: str) -> Config:
    config = reg.configs.get(config_id)
    if config is None:
        raise ArtedError(404, f"Config {config_id!r} not found", details={"valid_ids": sorted(reg.configs)})
    return config


def choose_outputs(reg: Registry, config: Config, requested: str | None) -> list[Config]:
    """Request `output_config` → the config's `output_configs` → the default of its media type → none."""
    if config.kind == "output":
        return [config]
    if requested:
        chosen = reg.configs.get(requested)
        if chosen is None or chosen.kind != "output":
            raise ArtedError(
                404, f"Output config {requested!r} not found", details={"valid_ids": [c.id for c in reg.outputs()]}
            )
        return [chosen]
    prefs = config.media_preferences
    if prefs.output_configs:
        return [reg.configs[prefs.output_configs[0]]]
    if prefs.default_output == "text":
        return []
    default = reg.default_output(prefs.default_output)
    if default is None:
        raise ArtedError(501, f"No output config serves media type {prefs.default_output!r}", status="not_available")
    return [default]


def check_configured(providers: ProviderSettings, outputs: list[Config]) -> None:
    missing = [] if providers.llm_url else ["KILN_LLM_URL"]
    if not providers.llm_model:
        missing.append("KILN_LLM_MODEL")
    if outputs and not providers.comfyui_url:
        missing.append("KILN_COMFYUI_URL")
    if missing:
        raise ArtedError(
            503,
            f"Not configured: set {', '.join(missing)}",
            status="not_configured",
            details={"missing_settings": missing},
        )


def valid_run_id(value: str | None) -> str:
    if value is None:
        return str(uuid.uuid4())
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ArtedError(400, "run_id must be a UUID") from None


async def create_run(
    session: AsyncSession,
    kernel: Any,
    *,
    run_id: str,
    mode: str,
    config: Config,
    outputs: list[Config],
    text: str,
    level: str,
    execution_mode: str,
    seed: int | None,
    user_id: str,
    session_id: str,
    options: dict[str, Any],
    client_id: bool = False,
) -> Any:
    if client_id and await session.get(Run, run_id) is not None:
        raise ArtedError(409, f"Run {run_id} already exists", run_id=run_id)
    values = {
        "id": run_id,
        "mode": mode,
        "config_id": config.id,
        "user_id": user_id,
        "session_id": session_id,
        "safety_level": level,
        "execution_mode": execution_mode[:16],
        "input_text": text,
        "requested_seed": seed,
        "options": {**options, "outputs": [o.id for o in outputs]},
    }
    opened = opening(values)
    # The job carries what the stages need of the row (pipeline.RUN_FIELDS) and the lists it
    # starts from: no read at its start.
    job = await kernel.jobs.create(
        session, JOB_KIND, {"run_id": run_id, "run": dict(values), "opened": opened}, owner_id=None, max_attempts=1
    )
    values.update(
        opened,
        job_id=job.id,
        backend_info=[],
        outputs=[],
        entity_count=len(opened["entities"]),
        items_count=len(opened["items"]),
        stored_bytes=sum(entity["size"] for entity in opened["entities"]),
    )
    # A Core INSERT (the columns' defaults apply): the ORM unit of work cost more than the statement.
    await session.execute(insert(RUNS), [values])
    await session.commit()
    # the values as attributes: an ORM instance (instrumented attributes, instance state) is not needed
    return SimpleNamespace(**values)


async def reload_run(session: AsyncSession, run_id: str) -> Any:
    """The run's row as it is now, as a plain read-only object with the `Run` attributes
    (a Core SELECT: no ORM identity map or instance state is needed for the answer)."""
    row = (await session.execute(select(RUNS).where(RUNS.c.id == run_id))).mappings().one()
    return SimpleNamespace(**row)


async def start_and_wait(kernel: Any, job_id: str, timeout: float | None) -> dict[str, Any] | None:
    """Kick the job; with a timeout, wait for its end and return `{status, result}` of the ended
    job (None when time ran out)."""
    if timeout is None:
        await kernel.jobs.kick(job_id)
        return None
    async with kernel.events.subscribe("job.updated", where=("id", job_id)) as sub:
        await kernel.jobs.kick(job_id)
        try:
            async with asyncio.timeout(timeout):
                async for _topic, data in sub:
                    if data.get("status") in FINISHED:
                        return {"status": data["status"], "result": data.get("result")}
        except TimeoutError:
            job = await kernel.jobs.get(job_id)
            return {"status": job.status, "result": job.result} if job is not None and job.status in FINISHED else None
    return None


async def finished_run(session: AsyncSession, kernel: Any, run: Any, job: dict[str, Any]) -> Any:
    """The run as its ended job left it: the job's result carries the run's closing values
    (`pipeline.execute`), so the answer needs no read of the row; without them (the job failed
    outside the stages, was cancelled) the row is read and settled."""
    closing = (job.get("result") or {}).get("run") if job["status"] == SUCCEEDED else None
    if closing is None:
        return await settle(session, kernel, await reload_run(session, run.id))
    return SimpleNamespace(**{name: getattr(run, name) for name in _ANSWER_FIELDS}, **closing)


async def settle(session: AsyncSession, kernel: Any, run: Any) -> Any:
    """The run as it stands, read with its job: a run still open whose job has ended (crashed
    worker, cancel, an error outside the stages) is closed as failed, with the job's error, so it
    never stays `in_progress` for ever; a queued run whose job is running has started: its first
    stage writes that with its entity (`Recorder.start`), so until then the job's claim says it."""
    if run.status not in (QUEUED, IN_PROGRESS) or run.job_id is None:
        return run
    job = await kernel.jobs.get(run.job_id)
    if job is not None and job.status == RUNNING and run.status == QUEUED:
        started = {column.name: getattr(run, column.name) for column in RUNS.c}
        started.update(status=IN_PROGRESS, started_at=job.started_at, current_stage=1, current_step="safety")
        return SimpleNamespace(**started)
    if job is None or job.status not in FINISHED:
        return run
    error = {
        "stage": run.current_step,
        "error_type": f"job_{job.status}",
        "message": f"the run stopped: its job {job.status}",
        "http_status": 500,
    }
    await session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status.in_((QUEUED, IN_PROGRESS)))
        .values(status=FAILED, error=error, finished_at=job.finished_at or utcnow())
    )
    await session.commit()
    return await reload_run(session, run.id)


async def load_run(session: AsyncSession, run_id: str) -> Run:
    try:
        key = str(uuid.UUID(run_id))
    except ValueError:
        key = None
    run = (await session.execute(select(Run).where(Run.id == key))).scalar_one_or_none() if key else None
    if run is None:
        raise ArtedError(404, "Run not found", run_id=run_id[:64])
    return run
