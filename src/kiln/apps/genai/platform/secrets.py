"""Provider `secret_refs`: only `modelops://credential/<id>` and `env://NAME` are accepted; a
reference is resolved only for validation, preflight and runtime dispatch, never returned."""

from __future__ import annotations

import os
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError

CREDENTIAL_REF = re.compile(r"^modelops://credential/([0-9a-fA-F-]{36})$")
ENV_REF = re.compile(r"^env://([A-Za-z_][A-Za-z0-9_]{0,127})$")
SECRET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_REFS = 16


def check_secret_refs(refs: Any) -> dict[str, str]:
    """The normalized refs, or 400 `invalid_secret_ref` (a literal key is never stored)."""
    if refs is None:
        return {}
    if not isinstance(refs, dict) or len(refs) > MAX_REFS:
        raise GenaiError(400, "invalid_secret_refs", f"secret_refs must be an object of at most {MAX_REFS} refs")
    clean: dict[str, str] = {}
    for name, value in refs.items():
        if not isinstance(name, str) or not SECRET_NAME.match(name):
            raise GenaiError(400, "invalid_secret_refs", "secret_refs keys are lower-case names like api_key")
        if value in (None, ""):
            continue
        if not isinstance(value, str) or not (CREDENTIAL_REF.match(value) or ENV_REF.match(value)):
            raise GenaiError(
                400,
                "invalid_secret_ref",
                f"secret_refs.{name} must be modelops://credential/<id> or env://NAME; literal keys are refused",
                {"secret": name},
            )
        clean[name] = value
    return clean


async def resolve_secret_refs(session: AsyncSession, kernel: Any, refs: dict[str, str]) -> dict[str, str]:
    """Secret values by name; 409 `secret_unresolved` when a reference cannot be resolved."""
    from kiln.apps.genai.modelops.credentials import decrypt_credential

    values: dict[str, str] = {}
    for name, ref in (refs or {}).items():
        if match := ENV_REF.match(ref):
            value = os.environ.get(match.group(1))
            if not value:
                raise GenaiError(
                    409, "secret_unresolved", f"secret_refs.{name}: environment variable is not set", {"secret": name}
                )
            values[name] = value
        elif match := CREDENTIAL_REF.match(ref):
            values[name] = await decrypt_credential(session, kernel, match.group(1).lower(), secret=name)
        else:
            raise GenaiError(409, "secret_unresolved", f"secret_refs.{name} is not a supported reference")
    return values


def credential_id_of(refs: dict[str, str]) -> str | None:
    for ref in (refs or {}).values():
        if match := CREDENTIAL_REF.match(ref):
            return match.group(1).lower()
    return None
