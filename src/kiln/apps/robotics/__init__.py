"""Robotics surface: register ROS1/ROS2 recordings, index them, turn them into datasets.

`install(app)` mounts the contract's routes (open on loopback, token elsewhere) and renders
the surface's refusals as FastAPI's `{"detail": "..."}`.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def install(app: FastAPI) -> None:
    from kiln.apps.robotics.common import RoboticsError
    from kiln.apps.robotics.router import router

    async def robotics_error(_request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, RoboticsError):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    app.add_exception_handler(RoboticsError, robotics_error)
    app.include_router(router)
