"""The history screen's result routes (added to the reference after the contract): rating,
favourite, bulk favourite/delete and a ZIP export of chosen results.

A result is a succeeded `lora.generate` job; its rating and favourite flag live in the job's
own result document (`rating`, `is_favorite`, `rating_updated_at`, `favorite_updated_at`);
the database's triggers copy them into `lora_generation_results` (the history's columns) in
the same UPDATE. Registered before `DELETE /generation/results/{id}`.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from kiln.apps.lora.errors import LoraError, LoraRoute, not_found
from kiln.apps.lora.generation import service
from kiln.apps.lora.generation.jobs import image_key
from kiln.apps.lora.generation.views import result_summary
from kiln.apps.lora.urls import api_base
from kiln.core.deps import KernelDep, SessionDep
from kiln.core.jobs import Job

router = APIRouter(route_class=LoraRoute, tags=["lora: generation history"])
MAX_IDS = 500
Ids = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=MAX_IDS)]


class RatingBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    rating: int | None = Field(ge=0, le=5)


class FavoriteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    is_favorite: bool


class BulkFavoriteBody(FavoriteBody):
    ids: Ids


class IdsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    ids: Ids


class ExportBody(IdsBody):
    include_metadata: bool = True


async def _result(session: Any, job_id: str) -> Job:
    job = await service.get_job(session, job_id, (service.GENERATE,))
    if job.status != "succeeded":
        raise not_found("Result")
    return job


async def _results(session: Any, ids: list[str]) -> list[Job]:
    rows = await session.scalars(
        select(Job).where(Job.id.in_(set(ids)), Job.kind == service.GENERATE, Job.status == "succeeded")
    )
    return list(rows.all())


def _mark(job: Job, **values: Any) -> None:
    now = datetime.now(UTC).isoformat()
    stamps = {f"{'rating' if key == 'rating' else 'favorite'}_updated_at": now for key in values}
    job.result = {**(job.result if isinstance(job.result, dict) else {}), **values, **stamps}


@router.put("/generation/results/bulk-favorite")
async def bulk_favorite(body: BulkFavoriteBody, session: SessionDep) -> dict[str, Any]:
    jobs = await _results(session, body.ids)
    for job in jobs:
        _mark(job, is_favorite=body.is_favorite)
    await session.commit()
    return {"updated": len(jobs), "ids": [job.id for job in jobs]}


@router.delete("/generation/results/bulk-delete")
async def bulk_delete(body: IdsBody, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    jobs = await _results(session, body.ids)
    for job in jobs:
        await session.delete(job)
    await session.commit()
    for job in jobs:
        await kernel.blobs.delete_prefix(f"lora/generations/{job.id}/")
    return {"deleted": len(jobs)}


async def _set(request: Request, session: Any, job_id: str, **values: Any) -> dict[str, Any]:
    job = await _result(session, job_id)
    _mark(job, **values)
    await session.commit()
    return result_summary(job, api_base(request))


@router.put("/generation/results/{job_id}/rating")
async def rate(job_id: str, body: RatingBody, request: Request, session: SessionDep) -> dict[str, Any]:
    return await _set(request, session, job_id, rating=body.rating)


@router.put("/generation/results/{job_id}/favorite")
async def favorite(job_id: str, body: FavoriteBody, request: Request, session: SessionDep) -> dict[str, Any]:
    return await _set(request, session, job_id, is_favorite=body.is_favorite)


@router.post("/generation/results/export")
async def export(body: ExportBody, request: Request, session: SessionDep, kernel: KernelDep) -> StreamingResponse:
    jobs = await _results(session, body.ids)
    if not jobs:
        raise LoraError(404, "No results to export")
    base = api_base(request)
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (closed by the stream)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED) as archive:
        for job in jobs:
            count = len((job.result or {}).get("images") or [])
            for index in range(count):
                try:
                    data = await kernel.blobs.read_bytes(image_key(job.id, index))
                except FileNotFoundError:
                    continue
                archive.writestr(f"{job.id}/{index}.png", data)
            if body.include_metadata:
                archive.writestr(f"{job.id}/metadata.json", json.dumps(result_summary(job, base), indent=2))
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        with spool:
            while block := spool.read(1024 * 1024):
                yield block

    name = f"generation-export-{datetime.now(UTC):%Y%m%d-%H%M%S}.zip"
    return StreamingResponse(
        chunks(), media_type="application/zip", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
