"""The genai surface (VANESSA contract): a GenAI control plane — identity, runtime profile,
platform providers and deployments, ModelOps, registry and catalog, knowledge bases, chat."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI


def _wrap_lifespan(app: FastAPI) -> None:
    """While the app runs, the runtime profile guards every cloud-origin provider call of the
    process; at shutdown buffered usage is written and pooled provider clients and pgvector pools are closed before
    the kernel stops."""
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        from kiln.apps.genai.runtime.guard import clear_process_guard, install_process_guard

        async with original(application) as state:
            install_process_guard(application)
            try:
                yield state
            finally:
                from kiln.providers.http import close_shared_clients

                clear_process_guard()
                kernel = getattr(application.state, "kernel", None)
                buffer = getattr(kernel, "genai_usage", None)
                if buffer is not None:
                    await buffer.close()
                await close_shared_clients()
                from kiln.providers.vectors.pgvector import close_pools

                await close_pools()

    app.router.lifespan_context = lifespan


def install(app: FastAPI) -> None:
    from kiln.apps.genai import models  # noqa: F401  (tables)
    from kiln.apps.genai.router import router

    app.include_router(router)
    _wrap_lifespan(app)
