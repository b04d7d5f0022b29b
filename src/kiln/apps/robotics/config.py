"""Knobs of the robotics surface (`KILN_ROBOTICS_*`), kept here so core settings stay surface-free.

`execution` mirrors the reference's two job modes. Both run through an engine job (so
cancel, retry and crash recovery work the same way); they differ in when the request
answers:

* `background` (default): `POST /conversions` answers 201 with the run `queued`; indexing
  answers once the job is done or after `index_wait_seconds` (it reads only the index).
* `inline`: the request waits for its job (up to `inline_timeout_seconds`); a failed
  conversion or index answers 422 `{"detail": "<error>"}` and the failed run/job stay.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Execution = Literal["background", "inline"]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class RoboticsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_ROBOTICS_", env_file=".env", extra="ignore")

    execution: Execution = Field(default="background", description="background | inline (see module doc).")
    inline_timeout_seconds: float = Field(default=3600, gt=0, description="Longest wait of an inline request.")
    index_wait_seconds: float = Field(
        default=30, gt=0, description="Background mode: how long POST /assets/{id}/index waits."
    )
    reindex_wait_seconds: float = Field(
        default=120, gt=0, description="Background mode: how long POST /assets/reindex-all waits."
    )
    conversion_workers: int = Field(
        default=0, ge=0, description="Processes of one conversion; 0 = KILN_CPU_WORKERS (0 = cores)."
    )

    roots: str = Field(
        default="",
        description=(
            "Folders a recording may live under (os.pathsep- or comma-separated). Empty: `/` while Kiln "
            "listens on loopback only, else $KILN_HOME/robotics."
        ),
    )
    max_chunk_mb: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Largest (declared) uncompressed size of one MCAP/bag chunk or db3 blob.",
    )
    max_ratio: int = Field(
        default=1000,
        ge=1,
        description=(
            "Largest uncompressed/compressed ratio of a chunk, message or compressed storage file (above 16 MiB)."
        ),
    )
    scan_max_entries: int = Field(
        default=100_000, ge=1, description="Directory entries one scan-directory request visits at most."
    )
    app_name: str = Field(default="Hephaes Backend", description="`app_name` of GET /health.")

    @property
    def max_chunk_bytes(self) -> int:
        return self.max_chunk_mb * 1024 * 1024

    def apply_read_limits(self) -> None:
        """Bound what readers in this process may decompress (bounds.set_limit)."""
        from kiln.apps.robotics.reading import bounds

        bounds.set_limit(self.max_chunk_bytes, self.max_ratio)

    def allowed_roots(self, home: Path, loopback: bool) -> list[Path]:
        """The resolved folders recordings may be registered from."""
        raw = [r.strip() for part in self.roots.split(",") for r in part.split(os.pathsep) if r.strip()]
        if not raw:
            raw = ["/"] if loopback else [str(home / "robotics")]
        return [Path(r).expanduser().resolve() for r in raw]

    def wait_seconds(self, background_wait: float) -> float:
        """How long a request waits for its job in the configured mode."""
        return self.inline_timeout_seconds if self.execution == "inline" else background_wait


def robotics_settings(kernel: Any) -> RoboticsSettings:
    """The kernel's robotics settings, built from the environment on first use."""
    return kernel.surface_settings(RoboticsSettings)


def recording_roots(kernel: Any) -> list[Path]:
    """The folders recordings may be registered from (KILN_ROBOTICS_ROOTS or its default)."""
    settings = kernel.settings
    return robotics_settings(kernel).allowed_roots(settings.home, settings.host in LOOPBACK_HOSTS)


def reading_roots(kernel: Any) -> list[Path]:
    """Where a registered recording may be read from: the roots as they are set *now* (checked at
    every read, not only at registration), plus the uploads folder uploads always land in."""
    return [*recording_roots(kernel), (kernel.settings.home / "robotics" / "uploads").resolve()]


def set_robotics_settings(kernel: Any, cfg: RoboticsSettings) -> None:
    """Replace the robotics settings of a running kernel (tests, embedding)."""
    kernel.set_surface_settings(cfg)
