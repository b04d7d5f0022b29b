"""Generation and delivery jobs: submit, wait, cancel, list. Every generation is an engine job."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.errors import LoraError, not_found
from kiln.apps.lora.generation.schemas import GenerationParams
from kiln.core.jobs import JOB_UPDATED, Job, JobError, JobNotFound, job_to_dict

GENERATE, DELIVER = "lora.generate", "lora.deliver"
KINDS = (GENERATE, DELIVER)
STARTED_TOPIC = "lora.generation_started"
TERMINAL = ("succeeded", "failed", "cancelled")


def require_sdnext(cfg: LoraSettings) -> None:
    if not cfg.sdnext_url:
        raise LoraError(400, "SDNext backend not configured (set KILN_SDNEXT_URL)")


def check_backend(backend: str) -> None:
    if backend != "sdnext":
        raise LoraError(400, f"Unknown generation backend '{backend[:50]}'; available: sdnext")


def _generation_payload(
    params: GenerationParams, backend: str, mode: str, save_images: bool, return_format: str
) -> dict[str, Any]:
    return {
        "prompt": params.prompt,
        "params": params.sdnext_payload(),
        "backend": backend,
        "mode": mode,
        "save_images": save_images,
        "return_format": return_format,
    }


async def _announce_and_kick(kernel: Any, job: Job, params: GenerationParams) -> None:
    # Announced before it can run, so a watcher sees generation_started first.
    await kernel.events.publish(
        STARTED_TOPIC, {"job_id": job.id, "params": params.model_dump(), "estimated_duration": None}
    )
    await kernel.events.publish(JOB_UPDATED, job_to_dict(job))
    await kernel.jobs.kick(job.id)


async def submit_generation(
    kernel: Any,
    params: GenerationParams,
    *,
    backend: str = "sdnext",
    mode: str = "deferred",
    save_images: bool = True,
    return_format: str = "url",
) -> Job:
    async with kernel.db.session() as session:
        job = await kernel.jobs.create(
            session, GENERATE, _generation_payload(params, backend, mode, save_images, return_format)
        )
        await session.commit()
    await _announce_and_kick(kernel, job, params)
    return job


async def generate_and_wait(
    kernel: Any,
    params: GenerationParams,
    timeout: float,
    *,
    backend: str = "sdnext",
    save_images: bool = True,
    return_format: str = "url",
) -> Job:
    """Submit a generation and wait (up to `timeout` s) for it to end. The job's events are
    subscribed to before it is kicked, so its end cannot be missed and the terminal event (the
    engine's full view of the job, published after its row is written) is the answer: no
    database read before or after. After `timeout`, the job as it is then."""
    async with contextlib.AsyncExitStack() as stack:
        async with kernel.db.session() as session:
            job = await kernel.jobs.create(
                session, GENERATE, _generation_payload(params, backend, "immediate", save_images, return_format)
            )
            updates = await stack.enter_async_context(kernel.events.subscribe(JOB_UPDATED, where=("id", job.id)))
            await session.commit()
        await _announce_and_kick(kernel, job, params)

        async def until_done() -> dict[str, Any]:
            async for _topic, data in updates:
                if data.get("status") in TERMINAL:
                    return data
            raise TimeoutError

        with contextlib.suppress(TimeoutError):
            data = await asyncio.wait_for(until_done(), timeout)
            return Job(
                id=data["id"],
                kind=data.get("kind", GENERATE),
                status=data["status"],
                payload=data.get("payload"),
                result=data.get("result"),
                progress=data.get("progress") or 0.0,
                error=data.get("error"),
            )
    return await kernel.jobs.get(job.id) or job


def check_http_target(cfg: LoraSettings, params: dict[str, Any]) -> None:
    host = params.get("host")
    if not isinstance(host, str) or not host:
        raise LoraError(400, "http delivery needs params.host")
    if host.casefold() not in {h.casefold() for h in cfg.delivery_hosts}:
        raise LoraError(400, "http delivery host is not in KILN_LORA_DELIVERY_HOSTS")


async def submit_delivery(kernel: Any, cfg: LoraSettings, prompt: str, mode: str, params: dict[str, Any]) -> Job:
    if mode == "sdnext":
        require_sdnext(cfg)
        raw = params.get("generation_params") if isinstance(params.get("generation_params"), dict) else params
        try:
            gen = GenerationParams.model_validate({**raw, "prompt": prompt})
        except ValueError as exc:
            raise LoraError(422, f"Invalid generation params: {str(exc).splitlines()[0][:200]}") from None
        return await submit_generation(kernel, gen, mode="deferred")
    if mode == "http":
        check_http_target(cfg, params)
    elif mode != "cli":
        raise LoraError(400, f"Unknown delivery mode '{mode[:32]}'; available: sdnext, http, cli")
    return await kernel.jobs.submit(
        DELIVER, {"prompt": prompt, "mode": mode, "mode_name": mode, "params": params, "delivery_params": params}
    )


async def get_job(session: AsyncSession, job_id: str, kinds: tuple[str, ...] = KINDS) -> Job:
    job = await session.get(Job, job_id)
    if job is None or job.kind not in kinds:
        raise not_found("Job")
    return job


async def cancel(kernel: Any, session: AsyncSession, job_id: str) -> dict[str, Any]:
    job = await get_job(session, job_id)
    if job.status not in ("queued", "running"):
        raise LoraError(400, "Job cannot be cancelled in its current state")
    try:
        await kernel.jobs.cancel(job_id)
    except JobNotFound:
        raise not_found("Job") from None
    except JobError:
        raise LoraError(400, "Job cannot be cancelled in its current state") from None
    return {"success": True, "status": "cancelled", "message": "Generation job cancelled"}


async def active_jobs(session: AsyncSession, limit: int) -> list[Job]:
    rows = await session.scalars(
        select(Job)
        .where(Job.kind.in_(KINDS), Job.status.in_(("queued", "running")))
        .order_by(func.coalesce(Job.started_at, Job.created_at).desc(), Job.id)
        .limit(limit)
    )
    return list(rows.all())
