"""Dependencies of the LoRA routes: settings, and the optional `KILN_LORA_API_KEY` check.

With the key set, a request needs `X-API-Key` equal to it, or a Kiln API token / login JWT in
`X-API-Key` or `Authorization: Bearer`. Without it the surface is open (on loopback; the core
`OpenSurfaceGuard` asks for a token elsewhere). The key is never echoed or logged.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.apps.lora.errors import LoraError
from kiln.core.auth.deps import AuthError, authenticate_token


def get_lora_settings(conn: HTTPConnection) -> LoraSettings:
    return lora_settings(conn.app.state.kernel)


LoraSettingsDep = Annotated[LoraSettings, Depends(get_lora_settings)]


async def key_allows(conn: HTTPConnection, cfg: LoraSettings) -> bool:
    if cfg.api_key is None or not cfg.api_key.get_secret_value():
        return True
    presented = conn.headers.get("x-api-key")
    if presented is None and conn.scope["type"] == "websocket":
        presented = conn.query_params.get("api_key")
    if presented and hmac.compare_digest(presented.encode(), cfg.api_key.get_secret_value().encode()):
        return True
    candidates = [presented] if presented else []
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        candidates.append(value.strip())
    for token in candidates:
        try:
            await authenticate_token(conn.app.state.kernel, token)
            return True
        except AuthError:
            continue
    return False


async def require_api_key(conn: HTTPConnection) -> None:
    if not await key_allows(conn, get_lora_settings(conn)):
        raise LoraError(403, "Invalid API Key")


ApiKeyGuard = Depends(require_api_key)
