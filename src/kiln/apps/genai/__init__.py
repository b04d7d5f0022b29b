"""The genai surface (VANESSA contract): a GenAI control plane — identity, runtime profile,
platform providers and deployments, ModelOps, registry and catalog, knowledge bases, chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


def _flush_on_shutdown(app: FastAPI) -> None:
    """Buffered usage is written and pooled provider clients closed before the kernel stops."""
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with original(application) as state:
            try:
                yield state
            finally:
                from kiln.providers.http import close_shared_clients

                kernel = getattr(application.state, "kernel", None)
                buffer = getattr(kernel, "genai_usage", None)
                if buffer is not None:
                    await buffer.close()
                await close_shared_clients()

    app.router.lifespan_context = lifespan


def install(app: FastAPI) -> None:
    from kiln.apps.genai import models  # noqa: F401  (tables)
    from kiln.apps.genai.router import router
    from kiln.apps.genai.runtime.guard import install_process_guard

    app.include_router(router)
    install_process_guard(app)
    _flush_on_shutdown(app)
