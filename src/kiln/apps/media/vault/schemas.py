"""Response models of the vault and the upload recents.

Scale at this edge: media `confidence` is percent (0-100, as the contract's frontend uses it);
inside Kiln it is 0-1.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
