"""The media surface (Hyperion contract): auth, dashboards, vault, upload, map, status WebSocket."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from kiln.apps.media import models  # noqa: F401  (tables)
    from kiln.apps.media.dashboard.ux import UxMiddleware
    from kiln.apps.media.router import router

    app.include_router(router)
    app.add_middleware(UxMiddleware)
