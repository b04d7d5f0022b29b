"""Small pieces every robotics service module shares: errors, names, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any


class RoboticsError(Exception):
    """A request the surface refuses; `status` is the HTTP code, the message says what to fix.

    `detail` replaces the message in the body when given (FastAPI's validation list shape)."""

    status = 422

    def __init__(self, message: str, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.detail = detail if detail is not None else message
        if status is not None:
            self.status = status


def spec_refusal(exc: Exception) -> RoboticsError:
    """A 422 for a spec that does not load: the field list when validation said why."""
    return RoboticsError(str(exc), detail=getattr(exc, "errors", None))


class NotFound(RoboticsError):
    status = 404


class Conflict(RoboticsError):
    status = 409


class BadRequest(RoboticsError):
    status = 400


class Unavailable(RoboticsError):
    status = 503


def normalize_name(name: str) -> str:
    """Whitespace-collapsed, casefolded: names compare like the reference's."""
    return re.sub(r"\s+", " ", name.strip()).casefold()


def iso(value: datetime | None) -> str | None:
    """UTC timestamps as ISO-8601 with a `Z`, like the contract's payloads."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(value: str, field: str) -> datetime:
    """An ISO date or datetime from a client; naive means UTC."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise RoboticsError(f"{field} must be an ISO-8601 date or datetime, got {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
