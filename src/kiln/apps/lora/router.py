"""All LoRA routes; `install()` mounts them under `/v1` and `/api/v1`.

Each domain folder has its own router using the surface's route class (`errors.LoraRoute`),
so every refusal is the `{"type","title","status"}` envelope whatever the app's handlers.
The WebSocket router checks the same guards itself (dependencies cannot answer a socket).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kiln.apps.lora.archive.router import router as archive_router
from kiln.apps.lora.deps import ApiKeyGuard
from kiln.apps.lora.errors import LoraRoute
from kiln.apps.lora.generation.results import router as results_router
from kiln.apps.lora.generation.router import router as generation_router
from kiln.apps.lora.generation.ws import router as ws_router
from kiln.apps.lora.insights.router import router as insights_router
from kiln.apps.lora.library.router import router as library_router
from kiln.apps.lora.recommend.router import router as recommend_router
from kiln.core.auth.deps import OpenSurfaceGuard

router = APIRouter(route_class=LoraRoute, dependencies=[OpenSurfaceGuard, ApiKeyGuard])
router.include_router(library_router)
router.include_router(results_router)  # before generation's DELETE /generation/results/{id}
router.include_router(generation_router)
router.include_router(insights_router)
router.include_router(archive_router)
router.include_router(recommend_router)

# The SPA's import/export, backup and analytics screens join paths that already start with
# `/api/v1` onto their `/api/v1` base (`/api/v1/api/v1/export/estimate`); those routers answer
# there too, out of the OpenAPI schema, so the screens work unchanged.
doubled_router = APIRouter(route_class=LoraRoute, dependencies=[OpenSurfaceGuard, ApiKeyGuard], include_in_schema=False)
doubled_router.include_router(archive_router)
doubled_router.include_router(insights_router)
DOUBLED_PREFIX = "/api/v1/api/v1"

frontend_router = APIRouter(route_class=LoraRoute, dependencies=[OpenSurfaceGuard], tags=["lora: frontend"])


@frontend_router.get("/frontend/settings")
async def frontend_settings(request: Request) -> dict[str, Any]:
    """Where the reference's SPA finds the API; never the API key (the reference handed it out)."""
    return {"backendUrl": request.scope.get("root_path", "") + "/api/v1", "backendApiKey": None}


PREFIXES = ("/v1", "/api/v1")
ROUTERS = (router, ws_router)
