"""Typed dependencies of the arted routes and the small helpers they share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kiln.apps.arted.config import ArtedSettings
from kiln.apps.arted.configs.registry import Registry, registry
from kiln.core.auth.models import User
from kiln.providers.config import ProviderSettings


# `async def` although nothing is awaited: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop per dependency per request for what is a dictionary look-up.
async def get_cfg(request: Request) -> ArtedSettings:
    return request.app.state.kernel.surface_settings(ArtedSettings)


async def get_providers(request: Request) -> ProviderSettings:
    return request.app.state.kernel.surface_settings(ProviderSettings)


async def get_registry(request: Request) -> Registry:
    return registry(request.app.state.kernel.surface_settings(ArtedSettings).config_dir)


def root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def user_of(user: User | None, body_user: str | None) -> str:
    """The token's user when one was presented, else the body's `user_id`, else `anonymous`."""
    if user is not None:
        return user.email
    from kiln.apps.arted.pipeline.service import clean

    value = clean(body_user or "").strip()[:128]
    return value or "anonymous"


CfgDep = Annotated[ArtedSettings, Depends(get_cfg)]
ProvidersDep = Annotated[ProviderSettings, Depends(get_providers)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
