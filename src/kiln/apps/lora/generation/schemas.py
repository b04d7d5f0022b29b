"""Request bodies of the generation routes (the reference's `SDNextGenerationParams`, bounded) and
the history screen's query."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from kiln.core.params import QUERY_INT_MAX

Backend = str
MIN_SIDE, MAX_SIDE = 64, 4096  # image width/height, in generation params and history filters
ReturnFormat = Literal["base64", "file_path", "url"]


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    prompt: str = Field(max_length=20_000)
    negative_prompt: str | None = Field(default=None, max_length=20_000)
    steps: int = Field(default=20, ge=1, le=200)
    sampler_name: str = Field(default="DPM++ 2M", max_length=100)
    cfg_scale: float = Field(default=7.0, ge=0, le=50)
    width: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    height: int = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE)
    seed: int = Field(default=-1, ge=-1, le=2**32 - 1)
    batch_size: int = Field(default=1, ge=1, le=16)
    n_iter: int = Field(default=1, ge=1, le=32)
    denoising_strength: float | None = Field(default=None, ge=0, le=1)

    def sdnext_payload(self) -> dict[str, Any]:
        body = self.model_dump(exclude_none=True)
        body["negative_prompt"] = self.negative_prompt or ""
        return body


class ComposeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prefix: str | None = Field(default=None, max_length=20_000)
    suffix: str | None = Field(default=None, max_length=20_000)
    include_trigger_words: bool = True


class SDNextDelivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    generation_params: GenerationParams
    mode: Literal["immediate", "deferred"] = "immediate"
    save_images: bool = True
    return_format: ReturnFormat = "base64"


class HttpDelivery(BaseModel):
    host: str = Field(max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str | None = Field(default=None, max_length=2000)


class CliDelivery(BaseModel):
    template: str | None = Field(default=None, max_length=20_000)


class Delivery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    mode: str = Field(max_length=32)
    sdnext: SDNextDelivery | None = None
    http: HttpDelivery | None = None
    cli: CliDelivery | None = None


class ComposeBody(ComposeRequest):
    delivery: Delivery | None = None


class ComposeAndGenerate(BaseModel):
    compose_request: ComposeRequest = Field(default_factory=ComposeRequest)
    generation_params: GenerationParams


class DeliveryCreate(BaseModel):
    prompt: str = Field(max_length=20_000)
    mode: str = Field(max_length=32)
    params: dict[str, Any] | None = None


HistorySort = Literal["created_at", "created_at_desc", "created_at_asc", "prompt", "rating"]
DateFilter = Literal["all", "today", "week", "month"]


def _instant(raw: str | None, *, end: bool) -> datetime | None:
    """An ISO 8601 date or date-time as an aware UTC instant (naive ones are UTC). A date alone
    means its whole day: from its midnight (start), or until the next midnight (end)."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        if len(raw) == 10:
            day = datetime.combine(date.fromisoformat(raw), time.min, UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise ValueError("must be an ISO 8601 date (YYYY-MM-DD) or date-time") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    # an explicit end instant is included: the bound kept is exclusive
    return moment + timedelta(microseconds=1) if end else moment


class HistoryQuery(BaseModel):
    """`GET /generation/results`: the contract's `limit`/`offset` (a plain list) or the history
    screen's `page`/`page_size` (a page with its summary), and the screen's filters and sorts.
    `start_date` / `end_date` come out as the UTC bounds `[start_date, end_date)`."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=QUERY_INT_MAX)
    page: int | None = Field(default=None, ge=1, le=10_000)
    page_size: int | None = Field(default=None, ge=1, le=100)
    search: str | None = Field(default=None, max_length=200)
    sort: HistorySort = "created_at"
    min_rating: int | None = Field(default=None, ge=0, le=5)
    width: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE)
    date_filter: DateFilter = "all"
    start_date: datetime | None = None
    end_date: datetime | None = None

    @field_validator("start_date", "end_date", mode="before")
    @classmethod
    def _parse_instant(cls, value: Any, info: ValidationInfo) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        if not isinstance(value, str) or len(value) > 40:
            raise ValueError("must be an ISO 8601 date (YYYY-MM-DD) or date-time")
        return _instant(value, end=info.field_name == "end_date")

    @model_validator(mode="after")
    def _ordered_dates(self) -> HistoryQuery:
        if self.start_date and self.end_date and self.start_date >= self.end_date:
            raise ValueError("start_date must be before end_date")
        return self

    @property
    def words(self) -> list[str]:
        return (self.search or "").split()
