"""The arted surface: config-driven 4-stage creative pipelines (safety → interception → translation and
pre-output safety → ComfyUI media), live recorder, media by run id, execution history and export.

`install(app)` mounts the routes; the configs are validated once here so a bad document is
reported at start (by name, then skipped) rather than on first use. At shutdown the pooled
provider clients (LLM, ComfyUI and its event socket) are closed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    from kiln.apps.arted import models  # noqa: F401  (tables)
    from kiln.apps.arted.config import ArtedSettings
    from kiln.apps.arted.configs.registry import registry
    from kiln.apps.arted.router import router

    reg = registry(ArtedSettings().config_dir)
    for error in reg.errors:
        log.warning("arted config %s skipped: %s", error["name"], error["error"])
    app.include_router(router)
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        from kiln.providers.http import close_shared_clients

        async with original(application) as state:
            try:
                yield state
            finally:
                await close_shared_clients()

    app.router.lifespan_context = lifespan
