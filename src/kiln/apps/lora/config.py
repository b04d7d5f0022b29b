"""Knobs of the LoRA surface.

`KILN_SDNEXT_URL` names the SDNext / AUTOMATIC1111 server (unset: generation answers "not
configured", never a fake image). Adapter files must resolve inside `KILN_LORA_DIR` or one of
the comma-separated `KILN_LORA_ROOTS`. `KILN_LORA_API_KEY`, when set, is required as
`X-API-Key` (a Kiln API token is accepted there and as `Authorization: Bearer` too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class LoraSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_LORA_", env_file=".env", extra="ignore", populate_by_name=True)

    sdnext_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KILN_SDNEXT_URL", "sdnext_url"),
        description="Base URL of an SDNext / AUTOMATIC1111 server; unset = generation not configured.",
    )
    sdnext_username: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KILN_SDNEXT_USERNAME", "sdnext_username"),
        description="HTTP Basic user of the SDNext server (when it runs with --auth).",
    )
    sdnext_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("KILN_SDNEXT_PASSWORD", "sdnext_password"),
        description="HTTP Basic password of the SDNext server.",
    )
    sdnext_timeout: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices("KILN_SDNEXT_TIMEOUT", "sdnext_timeout"),
        description="Longest wait for one txt2img call, in seconds.",
    )
    dir: Path = Field(default=Path("./loras"), description="Folder holding adapter files (imports extract here).")
    roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="More comma-separated folders whose adapter files may be registered."
    )
    api_key: SecretStr | None = Field(default=None, description="When set, routes require X-API-Key equal to it.")
    poll_interval: float = Field(default=0.5, gt=0, description="Seconds between SDNext /progress polls of a job.")
    max_per_page: int = Field(default=500, ge=1, description="Largest `per_page` of GET /adapters.")
    max_header_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest safetensors JSON header read."
    )
    generate_wait_seconds: float = Field(
        default=600.0, gt=0, description="How long an immediate /generation/generate waits for its job."
    )
    max_import_bytes: int = Field(
        default=64 * 1024**3, ge=1, description="Largest total uncompressed size of an imported archive."
    )
    delivery_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Hosts `http` deliveries may post to (comma-separated); none by default."
    )
    max_import_members: int = Field(default=100_000, ge=1, description="Most members of an imported archive.")

    @field_validator("roots", "delivery_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def allowed_roots(self) -> list[Path]:
        """The library folders, resolved, `dir` first."""
        seen: list[Path] = []
        for root in [self.dir, *self.roots]:
            resolved = Path(root).expanduser().resolve()
            if resolved not in seen:
                seen.append(resolved)
        return seen


def lora_settings(kernel: Any) -> LoraSettings:
    return kernel.surface_settings(LoraSettings)


def set_lora_settings(kernel: Any, cfg: LoraSettings) -> None:
    kernel.set_surface_settings(cfg)
