"""Request and response models of `/api/auth/*`."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, field_validator

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class SignupIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)
    full_name: str | None = Field(default=None, max_length=255)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if not _EMAIL.match(value):
            raise ValueError("must be an email address like name@example.com")
        return value


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)


class ProfileIn(BaseModel):
    full_name: str | None = Field(default=None, max_length=255)
    language: str | None = Field(default=None, max_length=16)


class UserOut(BaseModel):
    id: str
    email: str
    full_name: str | None
    language: str | None


class Message(BaseModel):
    message: str


class LoginOut(Message):
    user: UserOut
