"""Request bodies of the generation routes (the reference's `SDNextGenerationParams`, bounded)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = str
ReturnFormat = Literal["base64", "file_path", "url"]


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    prompt: str = Field(max_length=20_000)
    negative_prompt: str | None = Field(default=None, max_length=20_000)
    steps: int = Field(default=20, ge=1, le=200)
    sampler_name: str = Field(default="DPM++ 2M", max_length=100)
    cfg_scale: float = Field(default=7.0, ge=0, le=50)
    width: int = Field(default=512, ge=64, le=4096)
    height: int = Field(default=512, ge=64, le=4096)
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
