"""Response models of `/api/map/*`.

Scales at this edge: media `confidence` and the map's `min_confidence` are percent (0-100, as
the contract's frontend uses them); detection `confidence` is 0-1. Inside Kiln both are 0-1.
"""

from __future__ import annotations

from pydantic import BaseModel


class DetectionOut(BaseModel):
    label: str
    confidence: float  # 0..1
    bbox: dict[str, float]
    area_sqm: float | None
    detector: str | None = None


class MapPoint(BaseModel):
    id: str
    filename: str
    status: str
    worker_name: str | None
    lat: float
    lng: float
    altitude: float | None
    address: str | None
    image_url: str
    thumbnail_url: str | None
    has_trash: bool
    confidence: float  # percent; 0 when nothing was detected or detection was skipped
    detections: list[DetectionOut]


class MapPoints(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[MapPoint]


class GridCell(BaseModel):
    lat: float
    lng: float
    density: float  # media per km² of the cell
    count: int
    confidence: float  # percent
    label: str | None
    area_km2: float


class GridStats(BaseModel):
    total: int
    resolution: float
    density_unit: str = "per_km2"
    items: list[GridCell]


class LogEntry(BaseModel):
    action: str
    message: str
    worker_name: str | None
    timestamp: str


class LogHistory(BaseModel):
    media_id: str
    total: int
    history: list[LogEntry]
