"""Request bodies of the identity routes (the reference's field names)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    email: str = Field(max_length=320)
    username: str = Field(default="", max_length=64)
    password: str = Field(max_length=256)
    role: str | None = Field(default=None, max_length=32)
    is_active: bool | None = None


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    identifier: str | None = Field(default=None, max_length=320)
    email: str | None = Field(default=None, max_length=320)
    username: str | None = Field(default=None, max_length=320)
    password: str = Field(default="", max_length=256)


class RoleBody(BaseModel):
    role: str = Field(max_length=32)
