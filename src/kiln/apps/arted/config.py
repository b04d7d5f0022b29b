"""Knobs of the arted surface (`KILN_ARTED_*`). The servers it talks to are named by the shared
provider settings (`KILN_LLM_URL`, `KILN_LLM_MODEL`, `KILN_LLM_API_KEY`, `KILN_COMFYUI_URL`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ArtedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_ARTED_", env_file=".env", extra="ignore")

    config_dir: Path | None = Field(
        default=None,
        description="Extra configs (`interception/`, `output/`, `pipelines/`, `chunks/` of JSON files); "
        "an id here replaces the shipped one.",
    )
    safety_model: str | None = Field(default=None, description="Guard model of stages 1 and 3; default KILN_LLM_MODEL.")
    translation_model: str | None = Field(default=None, description="Model of the stage-3 translation.")
    sync_timeout_seconds: float = Field(
        default=900.0, gt=0, description="Longest wait of a synchronous execute before it answers 504."
    )
    max_input_chars: int = Field(default=4000, ge=1, le=100_000, description="Longest accepted input text.")
    max_media_bytes: int = Field(default=200 * 1024 * 1024, ge=1, description="Largest media file taken from ComfyUI.")
