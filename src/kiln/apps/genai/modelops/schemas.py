"""Bodies of the ModelOps routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CredentialBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    provider: str = Field(default="openai_compatible", max_length=64)
    display_name: str = Field(default="", max_length=200)
    api_base_url: str | None = Field(default=None, max_length=2048)
    api_key: str = Field(max_length=4096)
    credential_scope: str = Field(default="personal", max_length=16)
