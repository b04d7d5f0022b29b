"""Knobs of knowledge bases (`KILN_CONTEXT_*`)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ContextSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_CONTEXT_", env_file=".env", extra="ignore")

    source_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Directories local-directory sources may read (colon- or comma-separated); none: sources off.",
    )
    max_upload_files: int = Field(default=10, ge=1, description="Files per upload request.")
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1, description="Largest uploaded file.")
    max_documents_per_upload: int = Field(default=100, ge=1, description="Documents one upload may yield.")
    max_document_chars: int = Field(default=5_000_000, ge=1, description="Largest document text.")
    max_source_files: int = Field(default=10_000, ge=1, description="Files one source sync may read.")
    sync_stale_seconds: float = Field(default=120.0, gt=0, description="A KB sync lock older than this is taken over.")

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in re.split(r"[:,]", value) if part.strip()]
        return value
