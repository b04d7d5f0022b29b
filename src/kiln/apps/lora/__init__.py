"""LoRA surface: an adapter library read from safetensors headers, prompt composition, and
image generation on SDNext as engine jobs with per-job progress and real cancel.

`install(app)` mounts the routes under `/v1` and `/api/v1` (as the reference's bare backend
and its `/api` wrapper do); errors are the `{"type","title","status"}` envelope.
"""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from kiln.apps.lora.router import DOUBLED_PREFIX, PREFIXES, ROUTERS, doubled_router, frontend_router

    for prefix in PREFIXES:
        for router in ROUTERS:
            app.include_router(router, prefix=prefix)
        # The SPA asks for its settings under its API base (`/api/v1/frontend/settings`).
        app.include_router(frontend_router, prefix=prefix)
    app.include_router(frontend_router)
    app.include_router(doubled_router, prefix=DOUBLED_PREFIX)
