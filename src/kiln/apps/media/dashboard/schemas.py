"""Request and response models of `/api/dashboard/*`."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DispatchIn(BaseModel):
    media_id: str = Field(pattern=r"^[0-9a-fA-F-]{36}$", description="The media item to (re)process.")


class DispatchOut(BaseModel):
    message: str
    job_id: str
    media_id: str
    action: str
    queue_size: int
