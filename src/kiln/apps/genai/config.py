"""Knobs of the genai surface (`KILN_GENAI_*`, plus the few names the issue fixes without the
`GENAI_` part: bootstrap superadmin, credentials key, Hub endpoint, runtime profile)."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class GenaiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_GENAI_", env_file=".env", extra="ignore", populate_by_name=True)

    bootstrap_superadmin_email: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_BOOTSTRAP_SUPERADMIN_EMAIL"),
        description="Email of a superadmin created at start-up when no superadmin exists.",
    )
    bootstrap_superadmin_password: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_BOOTSTRAP_SUPERADMIN_PASSWORD"),
        description="Password of that bootstrap superadmin.",
    )
    credentials_key: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_CREDENTIALS_KEY"),
        description="Key encrypting saved provider credentials; default a key generated into "
        "`$KILN_HOME/credentials.key` (never the JWT secret).",
    )
    runtime_profile: Literal["online", "offline"] = Field(
        default="offline",
        validation_alias=_alias("KILN_RUNTIME_PROFILE", "KILN_GENAI_RUNTIME_PROFILE"),
        description="Runtime profile used until a superadmin sets one.",
    )
    runtime_profile_force: Literal["online", "offline"] | None = Field(
        default=None,
        validation_alias=_alias("KILN_RUNTIME_PROFILE_FORCE", "KILN_GENAI_RUNTIME_PROFILE_FORCE"),
        description="Locks the runtime profile (PUT answers 409 `runtime_profile_locked`).",
    )
    hf_endpoint: str = Field(
        default="https://huggingface.co",
        validation_alias=_alias("KILN_HF_ENDPOINT", "KILN_GENAI_HF_ENDPOINT"),
        description="Hugging Face Hub endpoint for discovery and downloads.",
    )
    hf_token: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_HF_TOKEN", "KILN_GENAI_HF_TOKEN"),
        description="Hub token for gated or private models.",
    )
    llm_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_LLM_URL"),
        description="OpenAI-compatible LLM server seeded as the `local-default` llm_inference provider.",
    )
    embeddings_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_EMBEDDINGS_URL", "KILN_GENAI_EMBEDDINGS_URL"),
        description="OpenAI-compatible embeddings server, seeded as a provider when set.",
    )
    qdrant_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_QDRANT_URL"),
        description="Qdrant server; seeds a provider and the `local-qdrant` deployment when set.",
    )
    pgvector_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_PGVECTOR_URL", "KILN_GENAI_PGVECTOR_URL"),
        description="PostgreSQL DSN with the pgvector extension, seeded as a vector_store provider when set.",
    )
    weaviate_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_WEAVIATE_URL", "KILN_GENAI_WEAVIATE_URL"),
        description="Weaviate server, seeded as a vector_store provider when set.",
    )
    mcp_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_MCP_URL"),
        description="MCP tool gateway, seeded as the mcp_runtime provider when set.",
    )
    sandbox_url: str | None = Field(
        default=None,
        validation_alias=_alias("KILN_SANDBOX_URL", "KILN_GENAI_SANDBOX_URL"),
        description="Code sandbox service, seeded as the sandbox_execution provider when set.",
    )
    provider_timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of calls to providers.")
    preflight_timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout of activation preflight.")
    max_download_bytes: int = Field(
        default=50 * 1024**3,
        ge=1,
        description="Largest model download (sum of its files).",
    )


def genai_settings(kernel: Any) -> GenaiSettings:
    return kernel.surface_settings(GenaiSettings)


def signup_open(kernel: Any) -> bool:
    """Self-registration: `KILN_SIGNUP=open|closed`; default open on loopback, closed elsewhere."""
    settings = kernel.settings
    if hasattr(type(settings), "signup_open"):  # the engine's rule, in builds that have it
        value = settings.signup_open
        return bool(value() if callable(value) else value)
    value = getattr(settings, "signup", None) or os.environ.get("KILN_SIGNUP")
    if value is not None:
        return str(value).strip().lower() == "open"
    return not settings.token_required_on_open_surfaces


def credentials_key(kernel: Any) -> bytes:
    """The 32-byte key for saved credentials: `KILN_CREDENTIALS_KEY` or one kept in KILN_HOME."""
    configured = genai_settings(kernel).credentials_key
    if configured:
        return _derive(configured)
    path: Path = kernel.settings.home / "credentials.key"
    if path.exists():
        return _derive(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    try:
        os.link(temp, path)  # atomic: the first process to generate a key wins, the others read it
    except FileExistsError:
        value = path.read_text().strip()
    finally:
        temp.unlink()
    return _derive(value)


def _derive(text: str) -> bytes:
    import hashlib

    return hashlib.sha256(b"kiln-genai-credentials\x00" + text.encode()).digest()


class VoiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_GENAI_", env_file=".env", extra="ignore")

    kws_url: str | None = Field(default=None, description="Wake-word service whose /health `/voice/health` reports.")
    kws_detection_threshold: float = Field(default=0.5, ge=0, le=1, description="Wake events below are ignored.")
    kws_cooldown_ms: int = Field(
        default=2000, ge=0, description="Repeated wake events of one device within are ignored."
    )
