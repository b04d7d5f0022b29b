"""Settings that name outside AI servers, shared by every surface (`KILN_LLM_*`, `KILN_COMFYUI_*`).

Read once per kernel with `kernel.surface_settings(ProviderSettings)`; tests replace them with
`kernel.set_surface_settings(ProviderSettings(...))`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

OriginSetting = Literal["auto", "local", "cloud"]


class ProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", env_file=".env", extra="ignore")

    llm_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible server (Ollama `http://host:11434/v1`, llama.cpp, vLLM, cloud).",
    )
    llm_model: str | None = Field(default=None, description="Default chat model of that server.")
    llm_api_key: SecretStr | None = Field(default=None, description="Optional bearer key of that server.")
    llm_origin: OriginSetting = Field(
        default="auto",
        description="`local` or `cloud` (the offline guard blocks cloud); `auto`: loopback/private hosts are local.",
    )
    llm_timeout_seconds: float = Field(default=120.0, gt=0, description="Read timeout of one LLM call.")
    provider_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Connect timeout of every provider call."
    )
    provider_max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a provider call on 429/5xx/connect errors (backoff)."
    )
    comfyui_url: str | None = Field(default=None, description="Base URL of a ComfyUI server.")
    comfyui_timeout_seconds: float = Field(
        default=600.0, gt=0, description="How long one ComfyUI prompt may take until its outputs exist."
    )
