"""All arted routes, open on loopback and token-protected elsewhere, answering in the arted envelope."""

from __future__ import annotations

from fastapi import APIRouter

from kiln.apps.arted.configs.router import router as schema_router
from kiln.apps.arted.errors import ArtedRoute
from kiln.apps.arted.pipeline.router import router as pipeline_router
from kiln.apps.arted.runs.router import router as runs_router
from kiln.core.auth.deps import OpenSurfaceGuard

router = APIRouter(dependencies=[OpenSurfaceGuard], tags=["arted"], route_class=ArtedRoute)
router.include_router(pipeline_router)
router.include_router(schema_router)
router.include_router(runs_router)
