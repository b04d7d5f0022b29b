"""Recorder, media and execution-history routes; every lookup is by run id in the database."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from kiln.apps.arted.deps import root
from kiln.apps.arted.errors import ArtedError, ArtedRoute
from kiln.apps.arted.pipeline import service
from kiln.apps.arted.runs import export, history
from kiln.apps.arted.runs.views import EXPECTED, entity_view, iso, outputs_view, record_view, run_summary, status_view
from kiln.core.deps import KernelDep, SessionDep
from kiln.core.files import range_response

router = APIRouter(route_class=ArtedRoute)
MEDIA_TYPES = {"image": ("output_image",), "audio": ("output_audio", "output_music"), "video": ("output_video",)}


async def _serve(request: Request, kernel: Any, run_id: str, entity: dict[str, Any], filename: str) -> Response:
    if entity.get("blob_key") is None:
        return Response(
            (entity.get("content") or "").encode(),
            media_type=entity["mime_type"],
            headers={"Content-Disposition": f'inline; filename="{filename}"'},
        )
    try:
        return await range_response(
            request, (kernel.blobs, entity["blob_key"]), entity["mime_type"], filename, inline=True
        )
    except FileNotFoundError:
        raise ArtedError(404, "Media file not found", run_id=run_id) from None


@router.get("/api/pipeline/{run_id}/status")
async def run_status(run_id: str, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return status_view(await service.settle(session, kernel, await service.load_run(session, run_id)))


@router.get("/api/pipeline/{run_id}/entities")
async def run_entities(request: Request, run_id: str, session: SessionDep) -> dict[str, Any]:
    run = await service.load_run(session, run_id)
    entities = [entity_view(root(request), run.id, e) for e in run.entities or []]
    return {
        "run_id": run.id,
        "status": status_view(run)["status"],
        "entity_count": len(entities),
        "expected_outputs": EXPECTED,
        "entities": entities,
    }


@router.get("/api/pipeline/{run_id}/entity/{entity_type}")
async def run_entity(
    request: Request, run_id: str, entity_type: str, session: SessionDep, kernel: KernelDep
) -> Response:
    """The first entity of that type; a number (`3`, `03`) selects by sequence instead."""
    run = await service.load_run(session, run_id)
    entities = run.entities or []
    if entity_type.isdigit():
        found = [e for e in entities if e["sequence"] == int(entity_type)]
    else:
        found = [e for e in entities if e["type"] == entity_type]
    if not found:
        raise ArtedError(404, f"Entity {entity_type[:64]} not found for run {run.id}", run_id=run.id)
    return await _serve(request, kernel, run.id, found[0], found[0]["filename"])


@router.get("/api/media/info/{run_id}")
async def media_info(request: Request, run_id: str, session: SessionDep) -> dict[str, Any]:
    run = await service.load_run(session, run_id)
    outputs = []
    for e in run.entities or []:
        if e.get("blob_key") is None or not e["type"].startswith("output_"):
            continue
        meta = e.get("meta") or {}
        kind = e["type"].removeprefix("output_")
        outputs.append(
            {
                "type": kind,
                "filename": e["filename"],
                "file_size_bytes": e["size"],
                "format": meta.get("format") or e["filename"].rsplit(".", 1)[-1],
                "mime_type": e["mime_type"],
                "width": meta.get("width"),
                "height": meta.get("height"),
                "backend": meta.get("backend"),
                "config": meta.get("config"),
                "seed": meta.get("seed"),
                "url": f"{root(request)}/api/media/{kind}/{run.id}",
            }
        )
    return {
        "run_id": run.id,
        "schema": run.config_id,
        "execution_mode": run.execution_mode,
        "timestamp": iso(run.created_at),
        "outputs": outputs,
    }


@router.get("/api/media/run/{run_id}")
async def media_run(request: Request, run_id: str, session: SessionDep) -> dict[str, Any]:
    run = await service.load_run(session, run_id)
    entities = run.entities or []
    return {
        "run_id": run.id,
        "user_id": run.user_id,
        "timestamp": iso(run.created_at),
        "schema": run.config_id,
        "execution_mode": run.execution_mode,
        "safety_level": run.safety_level,
        "input_text": run.input_text,
        "transformed_text": run.final_output,
        "status": status_view(run)["status"],
        "outputs": outputs_view(root(request), run),
        "entities": [entity_view(root(request), run.id, e) for e in entities],
    }


async def _media_file(request: Request, kind: str, run_id: str, session: Any, kernel: Any) -> Response:
    run = await service.load_run(session, run_id)
    for entity_type in MEDIA_TYPES[kind]:
        found = [e for e in run.entities or [] if e["type"] == entity_type and e.get("blob_key")]
        if found:
            ext = found[0]["filename"].rsplit(".", 1)[-1]
            return await _serve(request, kernel, run.id, found[0], f"{run.id}.{ext}")
    raise ArtedError(404, f"No {kind} found for run {run.id}", run_id=run.id)


# One static route per media type (not `/api/media/{kind}/...`), so the media surface's
# `/api/media/{media_id}/image` is never shadowed when both are mounted at the root.
@router.get("/api/media/image/{run_id}")
async def media_image(request: Request, run_id: str, session: SessionDep, kernel: KernelDep) -> Response:
    return await _media_file(request, "image", run_id, session, kernel)


@router.get("/api/media/audio/{run_id}")
async def media_audio(request: Request, run_id: str, session: SessionDep, kernel: KernelDep) -> Response:
    return await _media_file(request, "audio", run_id, session, kernel)


@router.get("/api/media/video/{run_id}")
async def media_video(request: Request, run_id: str, session: SessionDep, kernel: KernelDep) -> Response:
    return await _media_file(request, "video", run_id, session, kernel)


@router.get("/api/runs/stats")
async def runs_stats(session: SessionDep) -> dict[str, Any]:
    return await history.stats(session)


@router.get("/api/runs")
async def runs_list(
    session: SessionDep,
    limit: Annotated[str, Query()] = "20",
    offset: Annotated[str, Query()] = "0",
    config: str | None = None,
    date: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    if not limit.isdigit() or not 1 <= int(limit) <= 100:
        raise ArtedError(400, "Invalid limit parameter", details="limit must be an integer from 1 to 100")
    if not offset.isdigit() or int(offset) > 10**9:
        raise ArtedError(400, "Invalid offset parameter", details="offset must be an integer >= 0")
    for name, value in (("config", config), ("user_id", user_id), ("session_id", session_id)):
        if value is not None and len(value) > 128:
            raise ArtedError(400, f"Invalid {name} parameter", details="at most 128 characters")
    day = history.parse_day(date)
    rows, total = await history.list_runs(
        session, limit=int(limit), offset=int(offset), config=config, day=day, user_id=user_id, session_id=session_id
    )
    body: dict[str, Any] = {
        "executions": [run_summary(r) for r in rows],
        "total": total,
        "limit": int(limit),
        "offset": int(offset),
        "returned": len(rows),
    }
    filters = {"config": config, "date": date, "user_id": user_id, "session_id": session_id}
    if any(v is not None for v in filters.values()):
        body["filters"] = filters
    return body


async def _record(request: Request, session: Any, execution_id: str) -> dict[str, Any]:
    try:
        run = await service.load_run(session, execution_id)
    except ArtedError:
        raise ArtedError(404, "Execution not found", execution_id=execution_id[:64]) from None
    return record_view(root(request), run)


@router.get("/api/runs/{execution_id}")
async def runs_get(request: Request, execution_id: str, session: SessionDep) -> dict[str, Any]:
    return await _record(request, session, execution_id)


@router.get("/api/runs/{execution_id}/export/{fmt}")
async def runs_export(request: Request, execution_id: str, fmt: str, session: SessionDep) -> Response:
    record = await _record(request, session, execution_id)
    if fmt not in export.FORMATS:
        raise ArtedError(
            400,
            "Invalid export format",
            format=fmt[:16],
            supported_formats=list(export.FORMATS),
            available_now=list(export.FORMATS),
        )
    import asyncio

    data = await asyncio.to_thread(export.export, record, fmt)
    return Response(
        data,
        media_type=export.FORMATS[fmt],
        headers={"Content-Disposition": f'attachment; filename="{record["execution_id"]}.{fmt}"'},
    )
