"""Request and response models of the media contract.

Scales at this edge: media `confidence` and the map's `min_confidence` are percent (0-100, as
the contract's frontend uses them); detection `confidence` is 0-1. Inside Kiln both are 0-1.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SignupIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)
    full_name: str | None = Field(default=None, max_length=255)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("must be an email address like name@example.com")
        return value


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)


class ProfileIn(BaseModel):
    full_name: str | None = Field(default=None, max_length=255)
    language: str | None = Field(default=None, max_length=16)


class UserOut(BaseModel):
    id: str
    email: str
    full_name: str | None
    language: str | None


class Message(BaseModel):
    message: str


class LoginOut(Message):
    user: UserOut


class DispatchIn(BaseModel):
    media_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$", description="The media item to (re)process.")


class DispatchOut(BaseModel):
    message: str
    job_id: str
    media_id: str
    action: str
    queue_size: int


class DetectionOut(BaseModel):
    label: str
    confidence: float  # 0..1
    bbox: dict[str, float]
    area_sqm: float | None
    detector: str | None = None


class VaultItem(BaseModel):
    id: str
    filename: str
    status: str
    timestamp: str
    metadata: dict[str, Any]
    assigned_worker: str | None
    image_url: str
    thumbnail_url: str | None
    technical_metadata: dict[str, Any] | None
    updated_at: str
    lat: float | None
    lng: float | None
    altitude: float | None
    address: str | None
    has_trash: bool
    confidence: float | None  # percent


class VaultPage(BaseModel):
    total: int
    page: int
    page_size: int
    total_pages: int
    items: list[VaultItem]


class RecentItem(BaseModel):
    id: str
    filename: str
    status: str
    timestamp: str
    image_url: str
    thumbnail_url: str | None
    metadata: dict[str, Any]
    address: str | None


class Recents(BaseModel):
    total: int
    items: list[RecentItem]


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
