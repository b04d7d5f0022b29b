"""Which surfaces (contracts) this process serves, and how they plug into the app and the workers.

A surface package `kiln.apps.<name>` offers `install(app)` (routes, error handling) and may have
a `jobs` module whose import registers its job handlers and periodic tasks.
"""

from __future__ import annotations

import importlib
import importlib.util

from fastapi import FastAPI

from kiln.settings import Settings


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def enabled_surfaces(settings: Settings) -> list[str]:
    """Enabled surfaces that exist in this build, in the configured order."""
    return [name for name in settings.apps if _has_module(f"kiln.apps.{name}.router")]


def load_job_handlers(settings: Settings) -> list[str]:
    """Import each enabled surface's `jobs` module (registers handlers and periodic tasks)."""
    loaded = []
    for name in enabled_surfaces(settings):
        module = f"kiln.apps.{name}.jobs"
        if _has_module(module):
            importlib.import_module(module)
            loaded.append(module)
    for module in settings.job_modules:
        importlib.import_module(module)
        loaded.append(module)
    return loaded


def install_surfaces(app: FastAPI, settings: Settings) -> list[str]:
    names = enabled_surfaces(settings)
    for name in names:
        package = importlib.import_module(f"kiln.apps.{name}")
        package.install(app)
    load_job_handlers(settings)
    return names
