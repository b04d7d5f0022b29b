"""Request models of the robotics contract (unknown fields refused, strings trimmed).

Responses are plain dicts shaped by `views.py`; spec payloads are accepted as objects here
and validated by the spec loader so a bad spec answers one readable 422 message.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kiln.apps.robotics.spec.draft import DraftRequest as DomainDraftRequest


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _unique_nonblank(values: object, field: str) -> object:
    """Runs before type validation, so anything that is not a list of strings (None, a number, a
    nested object) is handed on untouched for pydantic to accept or refuse in its own words."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        return values
    out: list[str] = []
    for v in values:
        v = v.strip()
        if not v:
            raise ValueError(f"{field} must not contain blank values")
        if v not in out:
            out.append(v)
    return out


class RegisterAssetRequest(Request):
    file_path: str = Field(min_length=1)


class ScanDirectoryRequest(Request):
    directory_path: str = Field(min_length=1)
    recursive: bool = True


class AttachTagRequest(Request):
    tag_id: str = Field(min_length=1, description="tag id or tag name")


class CreateTagRequest(Request):
    name: str = Field(min_length=1, max_length=200)


class ConversionCreateRequest(Request):
    asset_ids: list[str] = Field(min_length=1)
    saved_config_id: str | None = None
    spec: dict[str, Any] | None = None
    mapping: dict[str, list[str]] | None = None
    output: dict[str, Any] | None = None
    resample: dict[str, Any] | None = None
    write_manifest: bool | None = None

    @field_validator("asset_ids")
    @classmethod
    def _assets(cls, v: list[str]) -> list[str]:
        cleaned = [a.strip() for a in v]
        if any(not a for a in cleaned):
            raise ValueError("asset_ids must not contain blank ids")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("asset_ids must not contain duplicates")
        return cleaned

    @model_validator(mode="after")
    def _one_mode(self) -> ConversionCreateRequest:
        legacy = any(x is not None for x in (self.mapping, self.output, self.resample))
        modes = [self.saved_config_id is not None, self.spec is not None, legacy]
        if sum(modes) > 1:
            raise ValueError("use exactly one of saved_config_id, spec, or the legacy mapping/output/resample fields")
        if self.mapping is not None and (not self.mapping or any(not t for t in self.mapping.values())):
            raise ValueError("mapping must map each field to at least one topic")
        return self

    @property
    def mode(self) -> Literal["saved-config", "spec", "legacy"]:
        if self.saved_config_id is not None:
            return "saved-config"
        return "spec" if self.spec is not None else "legacy"


class InspectRequest(Request):
    asset_id: str = Field(min_length=1)
    topics: list[str] = Field(default_factory=list)
    sample_n: int = Field(8, ge=1, le=1000)
    max_depth: int = Field(4, ge=1, le=16)
    max_sequence_items: int = Field(4, ge=1, le=1000)
    on_failure: Literal["skip", "warn", "fail"] = "warn"
    topic_type_hints: dict[str, str] = Field(default_factory=dict)

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        return _unique_nonblank(v, "topics")


class DraftSpecRequest(DomainDraftRequest):
    """The domain's draft request with the HTTP limits (and blank topics refused, not dropped)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    max_features_per_topic: int = Field(2, ge=1, le=64)
    preview_rows: int = Field(5, ge=1, le=100)

    @field_validator("selected_topics", "join_topics", mode="before")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        return _unique_nonblank(v, "topics")


class DraftRequest(InspectRequest):
    draft_request: DraftSpecRequest = Field(default_factory=DraftSpecRequest)


class PreviewRequest(Request):
    asset_id: str = Field(min_length=1)
    spec: dict[str, Any]
    sample_n: int = Field(5, ge=1, le=100)
    topic_type_hints: dict[str, str] = Field(default_factory=dict)


class ConfigCreateRequest(Request):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any] | None = None
    # extension: save a persisted draft revision as this config (its spec when `spec` is omitted)
    draft_revision_id: str | None = None

    @model_validator(mode="after")
    def _source(self) -> ConfigCreateRequest:
        if self.spec is None and self.draft_revision_id is None:
            raise ValueError("spec is required (or draft_revision_id of a saved draft)")
        if self.description is not None and not self.description:
            self.description = None
        return self


class ConfigUpdateRequest(Request):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    metadata: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None


class ConfigDuplicateRequest(Request):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    metadata: dict[str, Any] | None = None
