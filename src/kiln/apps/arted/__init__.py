"""The arted surface: config-driven 4-stage creative pipelines (safety → interception → translation and
pre-output safety → ComfyUI media), live recorder, media by run id, execution history and export.

`install(app)` mounts the routes; the configs are validated once here so a bad document is
reported at start (by name, then skipped) rather than on first use.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

log = logging.getLogger(__name__)


def install(app: FastAPI) -> None:
    from kiln.apps.arted import models  # noqa: F401  (tables)
    from kiln.apps.arted.config import ArtedSettings
    from kiln.apps.arted.registry import registry
    from kiln.apps.arted.router import router

    reg = registry(ArtedSettings().config_dir)
    for error in reg.errors:
        log.warning("arted config %s skipped: %s", error["name"], error["error"])
    app.include_router(router)
