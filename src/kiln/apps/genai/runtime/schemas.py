"""Bodies of the runtime routes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ProfileBody(BaseModel):
    profile: str = Field(default="", max_length=32)
