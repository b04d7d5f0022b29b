"""Every knob Kiln has, read from `KILN_*` environment variables (or a `.env` file)."""

from __future__ import annotations

import ipaddress
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ALL_APPS = ("robotics", "genai", "media", "lora", "arted")
DEFAULT_WORKER_NAMES = (
    "Helios",
    "Eos",
    "Aethon",
    "Crius",
    "Iapetus",
    "Perses",
    "Phlegon",
    "Phoebe",
    "Theia",
    "Cronus",
)


def is_loopback_host(host: str) -> bool:
    """A loopback name or address: `localhost` (and `*.localhost`), 127.0.0.0/8, ::1."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path("./kiln-home"), description="Directory for the SQLite database and local blobs.")
    host: str = Field(default="127.0.0.1", description="Address `kiln serve` listens on.")
    port: int = Field(default=8000, description="Port `kiln serve` listens on.")
    apps: Annotated[list[str], NoDecode] = Field(
        default=list(ALL_APPS), description="Comma-separated surfaces to mount."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default SQLite at `$KILN_HOME/kiln.db`."
    )
    broker_url: str = Field(
        default="memory://",
        description="`memory://` runs jobs inside `serve`; `redis://`, `amqp://` or `nats://` feeds `kiln worker`.",
    )
    events_url: str | None = Field(
        default=None, description="Redis URL for the event bus; default: the broker URL when it is Redis."
    )
    worker_names: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_WORKER_NAMES),
        description="Names of the worker slots of an embedded server (one job at a time each).",
    )
    worker_concurrency: int = Field(default=10, ge=1, description="Slots of one `kiln worker` process.")
    job_heartbeat_seconds: float = Field(default=2.0, gt=0, description="How often a running job heartbeats.")
    job_stale_seconds: float = Field(
        default=30.0, gt=0, description="A running job whose heartbeat is older than this is recovered."
    )
    job_progress_interval: float = Field(
        default=0.5, ge=0, description="Minimum seconds between persisted progress writes of one job."
    )
    job_cancel_grace_seconds: float = Field(
        default=1.0, ge=0, description="Grace before a cancelled CPU step's process is terminated."
    )
    job_retry_backoff_seconds: float = Field(
        default=2.0, ge=0, description="Base of the exponential backoff for transient job errors."
    )
    job_default_max_attempts: int = Field(default=3, ge=1, description="Attempts of a job unless its kind says.")
    cpu_workers: int = Field(default=0, ge=0, description="Processes for CPU-heavy steps; 0 = number of cores.")
    cpu_workers_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness of the CPU-step processes, so the server keeps a core for requests; 0 = none.",
    )
    blob_url: str | None = Field(
        default=None, description="`s3://bucket/prefix` for S3-compatible storage; default local `$KILN_HOME/blobs`."
    )
    s3_endpoint_url: str | None = Field(default=None, description="Endpoint of an S3-compatible store.")
    s3_region: str = Field(default="us-east-1", description="Region of the S3 store.")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: str | None = Field(default=None, description="S3 secret access key.")
    secret_key: str | None = Field(
        default=None, description="JWT signing key; default a random key kept in `$KILN_HOME/secret.key`."
    )
    access_token_minutes: int = Field(default=30, ge=1, description="Lifetime of a login JWT.")
    cookie_minutes: int = Field(default=60, ge=1, description="Lifetime of the login cookie.")
    cookie_secure: bool = Field(default=False, description="Set `Secure` on auth cookies (needs HTTPS).")
    cookie_samesite: Literal["lax", "strict", "none"] = Field(default="lax", description="`SameSite` of cookies.")
    require_token: bool | None = Field(
        default=None,
        description="Require a token on surfaces whose contract has no auth; default: only off loopback.",
    )
    signup: Literal["open", "closed"] | None = Field(
        default=None,
        description="Self-registration (media, genai): `open` or `closed`; default open on loopback, closed elsewhere.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra `Host` names answered (`*.example.com` allowed); on loopback only loopback names otherwise.",
    )
    public_docs: bool = Field(
        default=False, description="Serve `/docs` and `/openapi.json` without a token off loopback."
    )
    public_metrics: bool = Field(default=False, description="Serve `/metrics` without a token off loopback.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Proxy addresses or networks whose `X-Forwarded-For` names the client (login rate limits).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:5173", "http://127.0.0.1:5173"],
        description="Comma-separated origins allowed by CORS.",
    )
    job_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra comma-separated modules to import for their job handlers."
    )
    migrate_on_start: bool = Field(default=True, description="Apply database migrations when `serve` starts.")
    log_level: str = Field(default="info", description="Log level.")

    @field_validator(
        "apps", "worker_names", "cors_origins", "job_modules", "allowed_hosts", "trusted_proxies", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("apps")
    @classmethod
    def _known_apps(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALL_APPS))
        if unknown:
            raise ValueError(f"unknown apps {unknown}; choose from {list(ALL_APPS)}")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"KILN_TRUSTED_PROXIES: {entry!r} is not an address or network") from None
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'kiln.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """True when jobs run inside the server process."""
        return self.broker_url.startswith("memory")

    @property
    def resolved_events_url(self) -> str | None:
        if self.events_url:
            return self.events_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else None

    @property
    def listens_on_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def token_required_on_open_surfaces(self) -> bool:
        """Off loopback (or with KILN_REQUIRE_TOKEN): no-auth surfaces, docs and metrics need a token."""
        if self.require_token is not None:
            return self.require_token
        return not self.listens_on_loopback

    @property
    def signup_open(self) -> bool:
        if self.signup is not None:
            return self.signup == "open"
        return self.listens_on_loopback

    @cached_property
    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = self.home / "secret.key"
        if path.exists():
            return path.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key
