"""`/api/map*`: geotagged points, grid statistics (cached), per-media log timeline."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from kiln.apps.media.deps import MediaSettingsDep, MediaUser
from kiln.apps.media.map import service as map_service
from kiln.apps.media.map.schemas import DetectionOut, GridStats, LogEntry, LogHistory, MapPoint, MapPoints
from kiln.apps.media.vault import service
from kiln.core.deps import KernelDep, RootPathDep, SessionDep
from kiln.core.errors import MESSAGE_OR_VALIDATION_422
from kiln.core.params import Offset

router = APIRouter(prefix="/api/map", tags=["media: map"], responses=MESSAGE_OR_VALIDATION_422)
BBOX_ERROR = "Invalid bounding box: min values must be <= max values."


def _bbox(
    min_lat: float | None, max_lat: float | None, min_lng: float | None, max_lng: float | None, *, required: bool
) -> map_service.BBox | None:
    given = [v is not None for v in (min_lat, max_lat, min_lng, max_lng)]
    if not any(given) and not required:
        return None
    if not all(given):
        # The reference silently ignored a partial box; say what is missing instead.
        raise HTTPException(422, "Bounding box needs all four of min_lat, max_lat, min_lng, max_lng")
    if min_lat > max_lat or min_lng > max_lng:  # type: ignore[operator]
        raise HTTPException(400, BBOX_ERROR)
    return map_service.BBox(min_lat, max_lat, min_lng, max_lng)  # type: ignore[arg-type]


def _pct(value: float | None) -> float:
    return round((value or 0.0) * 100, 2)


Lat = Annotated[float | None, Query(ge=-90, le=90)]
Lng = Annotated[float | None, Query(ge=-180, le=180)]


@router.get("", response_model=MapPoints)
async def map_points(
    user: MediaUser,
    kernel: KernelDep,
    session: SessionDep,
    base: RootPathDep,
    min_lat: Lat = None,
    max_lat: Lat = None,
    min_lng: Lng = None,
    max_lng: Lng = None,
    has_trash: bool | None = None,
    min_confidence: float = Query(default=0, ge=0, le=100, description="Percent, 0-100."),
    limit: int = Query(default=1000, ge=1, le=5000),
    offset: Offset = 0,
) -> MapPoints:
    bbox = _bbox(min_lat, max_lat, min_lng, max_lng, required=False)
    items, detections, total = await map_service.points(
        session,
        user.id,
        bbox=bbox,
        has_trash=has_trash,
        min_confidence=min_confidence / 100 or None,
        limit=limit,
        offset=offset,
    )
    out = []
    for item in items:
        image, thumb = await service.media_urls(kernel, item, base)
        out.append(
            MapPoint(
                id=item.id,
                filename=item.filename,
                status=item.status,
                worker_name=item.worker_name,
                lat=item.lat,
                lng=item.lng,
                altitude=item.altitude,
                address=item.address,
                image_url=image,
                thumbnail_url=thumb,
                has_trash=item.has_trash,
                confidence=_pct(item.confidence),
                detections=[
                    DetectionOut(
                        label=d.label, confidence=d.confidence, bbox=d.bbox, area_sqm=d.area_sqm, detector=d.detector
                    )
                    for d in detections[item.id]
                ],
            )
        )
    return MapPoints(total=total, limit=limit, offset=offset, items=out)


@router.get("/stats", response_model=GridStats)
async def map_stats(
    request: Request,
    user: MediaUser,
    session: SessionDep,
    cfg: MediaSettingsDep,
    min_lat: float = Query(ge=-90, le=90),
    max_lat: float = Query(ge=-90, le=90),
    min_lng: float = Query(ge=-180, le=180),
    max_lng: float = Query(ge=-180, le=180),
    resolution: float = Query(default=0.005, gt=0, le=1, description="Cell size in degrees."),
) -> dict[str, Any]:
    bbox = _bbox(min_lat, max_lat, min_lng, max_lng, required=True)
    cache = _cache(request, cfg.stats_cache_seconds)
    key = (user.id, *(round(v, 6) for v in (min_lat, max_lat, min_lng, max_lng, resolution)))
    version = await map_service.fingerprint(session, user.id)
    cells = cache.get(key, version)
    if cells is None:
        cells = await map_service.grid_stats(session, user.id, bbox, resolution)  # type: ignore[arg-type]
        cache.put(key, version, cells)
    items = [{**c, "confidence": _pct(c["confidence"])} for c in cells]
    return {"total": len(items), "resolution": resolution, "density_unit": "per_km2", "items": items}


def _cache(request: Request, ttl: float) -> map_service.StatsCache:
    state = request.app.state
    cache = getattr(state, "media_stats_cache", None)
    if cache is None:
        cache = state.media_stats_cache = map_service.StatsCache(ttl)
    return cache


@router.get("/{media_id}/logs", response_model=LogHistory)
async def media_logs(media_id: uuid.UUID, user: MediaUser, session: SessionDep) -> LogHistory:
    item = await service.get_owned(session, user.id, str(media_id))
    if item is None:
        raise HTTPException(404, "Media not found")
    rows = await service.logs(session, item.id)
    history = [
        LogEntry(action=r.action, message=r.message, worker_name=r.worker_name, timestamp=r.at.isoformat())
        for r in rows
    ]
    return LogHistory(media_id=item.id, total=len(history), history=history)
