"""Generation, delivery and compose routes. Every generation is an engine job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from kiln.apps.lora.compose.service import compose
from kiln.apps.lora.deps import LoraSettingsDep
from kiln.apps.lora.errors import LoraError, LoraRoute, not_found
from kiln.apps.lora.generation import history, service
from kiln.apps.lora.generation.jobs import image_key
from kiln.apps.lora.generation.schemas import (
    ComposeAndGenerate,
    ComposeBody,
    DeliveryCreate,
    GenerationParams,
    HistoryQuery,
)
from kiln.apps.lora.generation.views import (
    delivery_read,
    failed_result,
    generation_result,
    job_status,
    result_summary,
)
from kiln.apps.lora.urls import api_base
from kiln.core.deps import KernelDep, SessionDep
from kiln.core.files import range_response

router = APIRouter(route_class=LoraRoute, tags=["lora: generation"])

Mode = Literal["immediate", "deferred"]
Fmt = Literal["base64", "file_path", "url"]


@dataclass
class RunOptions:
    """The query parameters every generation route takes (the contract's names and defaults)."""

    backend: Annotated[str, Query(max_length=50)] = "sdnext"
    mode: Mode = "immediate"
    save_images: bool = True
    return_format: Fmt = "base64"


@dataclass
class QueuedRunOptions(RunOptions):
    """`queue-generation`'s: the same, deferred unless asked otherwise."""

    mode: Mode = "deferred"


async def _run(
    request: Request, kernel: Any, cfg: Any, params: GenerationParams, options: RunOptions
) -> dict[str, Any]:
    if options.backend != "sdnext":
        return failed_result(f"Unknown generation backend '{options.backend[:50]}'")
    if not cfg.sdnext_url:
        return failed_result("SDNext backend not configured (set KILN_SDNEXT_URL)")
    kwargs = {"backend": options.backend, "save_images": options.save_images, "return_format": options.return_format}
    if options.mode == "immediate":
        job = await service.generate_and_wait(kernel, params, cfg.generate_wait_seconds, **kwargs)
    else:
        job = await service.submit_generation(kernel, params, mode=options.mode, **kwargs)
    return generation_result(job, api_base(request))


@router.post("/compose")
async def compose_route(
    body: ComposeBody, session: SessionDep, kernel: KernelDep, cfg: LoraSettingsDep
) -> dict[str, Any]:
    result = await compose(
        session, prefix=body.prefix, suffix=body.suffix, include_trigger_words=body.include_trigger_words
    )
    delivery = None
    if body.delivery is not None:
        d = body.delivery
        if d.sdnext is not None:
            service.require_sdnext(cfg)
            service.check_backend(d.mode)
            params = d.sdnext.generation_params.model_copy(update={"prompt": result.prompt})
            job = await service.submit_generation(
                kernel,
                params,
                backend=d.mode,
                mode="deferred",
                save_images=d.sdnext.save_images,
                return_format=d.sdnext.return_format,
            )
        else:
            nested = d.http if d.mode == "http" else d.cli if d.mode == "cli" else None
            params = nested.model_dump(exclude_none=True) if nested is not None else {}
            job = await service.submit_delivery(kernel, cfg, result.prompt, d.mode, params)
        delivery = {"id": job.id, "status": "pending"}
    return {
        "prompt": result.prompt,
        "tokens": result.tokens,
        "warnings": result.warnings,
        "adapters": result.adapters,
        "delivery": delivery,
    }


@router.post("/deliveries", status_code=201)
async def create_delivery(body: DeliveryCreate, kernel: KernelDep, cfg: LoraSettingsDep) -> dict[str, Any]:
    job = await service.submit_delivery(kernel, cfg, body.prompt, body.mode, body.params or {})
    return {"delivery_id": job.id}


@router.get("/deliveries/{delivery_id}")
async def get_delivery(delivery_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    try:
        job = await service.get_job(session, delivery_id)
    except LoraError:
        raise not_found("delivery") from None
    return {"delivery": delivery_read(job, normalized=False, base=api_base(request))}


@router.get("/generation/backends")
async def backends(cfg: LoraSettingsDep) -> dict[str, bool]:
    return {"sdnext": bool(cfg.sdnext_url)}


@router.post("/generation/generate")
async def generate(
    params: GenerationParams,
    request: Request,
    kernel: KernelDep,
    cfg: LoraSettingsDep,
    options: Annotated[RunOptions, Depends()],
) -> dict[str, Any]:
    return await _run(request, kernel, cfg, params, options)


@router.post("/generation/compose-and-generate")
async def compose_and_generate(
    body: ComposeAndGenerate,
    request: Request,
    session: SessionDep,
    kernel: KernelDep,
    cfg: LoraSettingsDep,
    options: Annotated[RunOptions, Depends()],
) -> dict[str, Any]:
    c = body.compose_request
    result = await compose(session, prefix=c.prefix, suffix=c.suffix, include_trigger_words=c.include_trigger_words)
    if not result.tokens:
        raise LoraError(400, "No active adapters found")
    params = body.generation_params.model_copy(update={"prompt": result.prompt})
    return await _run(request, kernel, cfg, params, options)


@router.post("/generation/queue-generation")
async def queue_generation(
    params: GenerationParams,
    kernel: KernelDep,
    cfg: LoraSettingsDep,
    options: Annotated[QueuedRunOptions, Depends()],
) -> dict[str, Any]:
    service.check_backend(options.backend)
    service.require_sdnext(cfg)
    job = await service.submit_generation(
        kernel,
        params,
        backend=options.backend,
        mode=options.mode,
        save_images=options.save_images,
        return_format=options.return_format,
    )
    return {"delivery_id": job.id}


@router.get("/generation/jobs/active")
async def active(session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict[str, Any]]:
    return [job_status(job) for job in await service.active_jobs(session, limit)]


@router.get("/generation/jobs/{job_id}")
async def get_job(job_id: str, request: Request, session: SessionDep) -> dict[str, Any]:
    job = await service.get_job(session, job_id)
    return {"delivery": delivery_read(job, normalized=True, base=api_base(request))}


@router.post("/generation/jobs/{job_id}/cancel")
async def cancel(job_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await service.cancel(kernel, session, job_id)


@router.get("/generation/progress/{job_id}")
async def progress(job_id: str, session: SessionDep) -> dict[str, Any]:
    job = await service.get_job(session, job_id, (service.GENERATE,))
    status = job_status(job)
    return {
        "job_id": job.id,
        "status": status["status"],
        "progress": status["progress"] / 100,
        "message": status["message"],
        "error_message": status["error"],
    }


@router.get("/generation/results", response_model=None)
async def results(
    request: Request, session: SessionDep, query: Annotated[HistoryQuery, Query()]
) -> list[dict[str, Any]] | dict[str, Any]:
    """`limit`/`offset` (contract): a list. The history screen's `page`/`page_size`: its
    `{results, stats, page, page_size, total, pages, has_more}`, `stats` over every match.
    Both take the screen's filters and sorts (`HistoryQuery`), applied in SQL."""
    base = api_base(request)
    now = datetime.now(UTC)
    if query.page is None and query.page_size is None:
        return [
            result_summary(job, base) for job in await history.results(session, query, query.limit, query.offset, now)
        ]
    size = query.page_size or query.limit
    number = query.page or 1
    stats = await history.summary(session, query, now)
    total = stats["total_results"]
    jobs = await history.results(session, query, size, (number - 1) * size, now) if total > (number - 1) * size else []
    pages = -(-total // size)
    return {
        "results": [result_summary(job, base) for job in jobs],
        "stats": stats,
        "page": number,
        "page_size": size,
        "total": total,
        "pages": pages,
        "has_more": number < pages,
    }


async def _image(request: Request, session: Any, kernel: Any, job_id: str, index: int, thumb: bool) -> Response:
    job = await service.get_job(session, job_id, (service.GENERATE,))
    count = len((job.result or {}).get("images") or []) if isinstance(job.result, dict) else 0
    if not 0 <= index < count:
        raise not_found("image")
    media = "image/jpeg" if thumb else "image/png"
    try:
        return await range_response(request, (kernel.blobs, image_key(job.id, index, thumb)), media, inline=True)
    except FileNotFoundError:
        raise not_found("image") from None


@router.get("/generation/results/{job_id}/images/{index}")
async def image(job_id: str, index: int, request: Request, session: SessionDep, kernel: KernelDep) -> Response:
    return await _image(request, session, kernel, job_id, index, False)


@router.get("/generation/results/{job_id}/thumbnails/{index}")
async def thumbnail(job_id: str, index: int, request: Request, session: SessionDep, kernel: KernelDep) -> Response:
    return await _image(request, session, kernel, job_id, index, True)


@router.get("/generation/results/{job_id}/download")
async def download(job_id: str, request: Request, session: SessionDep, kernel: KernelDep) -> Response:
    job = await service.get_job(session, job_id, (service.GENERATE,))
    if job.status != "succeeded":
        raise not_found("image")
    try:
        return await range_response(
            request, (kernel.blobs, image_key(job.id, 0)), "image/png", filename=f"generation-{job.id}.png"
        )
    except FileNotFoundError:
        raise not_found("image") from None


@router.delete("/generation/results/{job_id}", status_code=204)
async def delete_result(job_id: str, session: SessionDep, kernel: KernelDep) -> Response:
    job = await service.get_job(session, job_id, (service.GENERATE,))
    if job.status in ("queued", "running"):
        raise LoraError(400, "Cancel the job before deleting it")
    await kernel.blobs.delete_prefix(f"lora/generations/{job.id}/")
    await session.delete(job)
    await session.commit()
    return Response(status_code=204)
