"""The genai surface (VANESSA contract): a GenAI control plane — identity, runtime profile,
platform providers and deployments, ModelOps, registry and catalog, knowledge bases, chat."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from kiln.apps.genai import models  # noqa: F401  (tables)
    from kiln.apps.genai.router import router
    from kiln.apps.genai.runtime.guard import install_process_guard

    app.include_router(router)
    install_process_guard(app)
