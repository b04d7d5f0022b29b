"""Knobs of the media surface (`KILN_MEDIA_*`), kept here so core settings stay surface-free.

`HF_TOKEN` / `HF_REPO_ID` are also read without the prefix because the contract documents them so.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_MEDIA_", env_file=".env", extra="ignore")

    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1, description="Largest accepted file.")
    max_files_per_request: int = Field(default=50, ge=1, description="Files in one upload request.")
    max_pixels: int = Field(
        default=100_000_000, ge=1, description="Largest image (width x height from the header); 415 above it."
    )
    decode_budget_mb: int = Field(
        default=1024, ge=1, description="Memory the running decode steps share; a step waits for it."
    )
    max_attempts: int = Field(default=3, ge=1, description="Processing attempts of one media item.")
    working_size: int = Field(default=1280, ge=64, description="Longest side of the detector's input.")
    detector_onnx_path: str | None = Field(default=None, description="YOLOv8 ONNX model file.")
    detector_labels: str | None = Field(default=None, description="Class names file of the ONNX model.")
    detector_url: str | None = Field(default=None, description="HTTP detector service (POST multipart file).")
    detector_conf_threshold: float = Field(default=0.25, ge=0, le=1)
    retry_seconds: float = Field(default=5, ge=0, description="Wait before retrying an unreachable detector.")
    hf_token: str | None = Field(default=None, validation_alias=AliasChoices("KILN_MEDIA_HF_TOKEN", "HF_TOKEN"))
    hf_repo_id: str | None = Field(default=None, validation_alias=AliasChoices("KILN_MEDIA_HF_REPO_ID", "HF_REPO_ID"))
    hf_endpoint: str | None = Field(default=None, description="Hub endpoint (tests point it at a fake).")
    reaper_every_seconds: float = Field(default=600, gt=0)
    pending_timeout_seconds: float = Field(default=15 * 60, gt=0)
    uploaded_timeout_seconds: float = Field(default=10 * 60, gt=0)
    # One threshold for the dashboard and the reaper, so "offline" means the same everywhere.
    worker_offline_seconds: float = Field(default=120, gt=0)
    load_sample_seconds: float = Field(default=60, gt=0, description="How often system load is persisted.")
    load_retention_days: int = Field(default=8, ge=7)
    stats_cache_seconds: float = Field(default=60, ge=0)
    active_user_seconds: float = Field(default=300, gt=0, description="Idle time after which a user is inactive.")
    ux_flush_seconds: float = Field(default=10, gt=0, description="How often request metrics are persisted.")
    environment: str = Field(
        default="PROD",
        min_length=1,
        max_length=32,
        description="`environment` of the system-health dashboard (the contract says PROD).",
    )


def media_settings(kernel: Any) -> MediaSettings:
    """The kernel's media settings, built from the environment on first use."""
    return kernel.surface_settings(MediaSettings)


def set_media_settings(kernel: Any, cfg: MediaSettings) -> None:
    """Replace the media settings of a running kernel (tests, embedding)."""
    kernel.set_surface_settings(cfg)
