"""The global runtime profile (online/offline). Offline is fail-closed for cloud-origin providers.

Effective profile: `KILN_RUNTIME_PROFILE_FORCE` (locked) > the database value > the configured
default. The value is also kept on the kernel so the shared HTTP client's offline guard can
refuse cloud traffic without a database round trip; every read and write refreshes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import GenaiSettings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.platform import families
from kiln.apps.genai.platform.models import (
    GenaiActiveDeployment,
    GenaiDeploymentBinding,
    GenaiProviderInstance,
)
from kiln.apps.genai.runtime.models import GenaiRuntimeConfig

PROFILE_KEY = "runtime_profile"
PROFILES = ("online", "offline")


@dataclass(frozen=True, slots=True)
class ProfileState:
    profile: str
    locked: bool
    source: str

    def dto(self) -> dict[str, Any]:
        return {"profile": self.profile, "locked": self.locked, "source": self.source}


async def profile_state(session: AsyncSession, settings: GenaiSettings) -> ProfileState:
    if settings.runtime_profile_force:
        return ProfileState(settings.runtime_profile_force, True, "forced")
    row = await session.get(GenaiRuntimeConfig, PROFILE_KEY)
    if row is not None and row.value in PROFILES:
        return ProfileState(row.value, False, "database")
    return ProfileState(settings.runtime_profile, False, "default")


async def is_offline(session: AsyncSession, settings: GenaiSettings) -> bool:
    return (await profile_state(session, settings)).profile != "online"


async def active_cloud_bindings(session: AsyncSession) -> list[dict[str, str]]:
    """Bindings of the active deployment whose provider family is cloud-origin."""
    rows = await session.execute(
        select(GenaiDeploymentBinding.capability_key, GenaiProviderInstance)
        .join(GenaiActiveDeployment, GenaiActiveDeployment.deployment_id == GenaiDeploymentBinding.deployment_id)
        .join(GenaiProviderInstance, GenaiProviderInstance.id == GenaiDeploymentBinding.provider_instance_id)
    )
    return [
        {
            "capability": capability,
            "provider_id": provider.id,
            "provider_slug": provider.slug,
            "provider_key": provider.provider_key,
        }
        for capability, provider in rows
        if families.is_cloud(provider.provider_key)
    ]


def offline_blocked(providers: list[dict[str, str]], action: str) -> GenaiError:
    names = ", ".join(p["provider_slug"] for p in providers)
    return GenaiError(
        409,
        "offline_provider_blocked",
        f"Runtime profile is offline; {action} would use cloud provider(s): {names}",
        {"providers": providers},
    )


async def ensure_provider_allowed(
    session: AsyncSession, settings: GenaiSettings, provider: GenaiProviderInstance, action: str
) -> None:
    """409 offline_provider_blocked when `provider` is cloud-origin and the profile is not online."""
    if families.is_cloud(provider.provider_key) and await is_offline(session, settings):
        raise offline_blocked(
            [{"provider_id": provider.id, "provider_slug": provider.slug, "provider_key": provider.provider_key}],
            action,
        )


async def set_profile(session: AsyncSession, settings: GenaiSettings, profile: str, user_id: str) -> ProfileState:
    profile = profile.strip().lower()
    if profile == "air_gapped":
        profile = "offline"
    if profile not in PROFILES:
        raise GenaiError(400, "invalid_profile", "profile must be one of: online, offline")
    if settings.runtime_profile_force:
        raise GenaiError(409, "runtime_profile_locked", "Runtime profile is locked by KILN_RUNTIME_PROFILE_FORCE")
    if profile == "offline":
        cloud = await active_cloud_bindings(session)
        if cloud:
            raise offline_blocked(cloud, "switching to offline")
    row = await session.get(GenaiRuntimeConfig, PROFILE_KEY)
    if row is None:
        session.add(GenaiRuntimeConfig(key=PROFILE_KEY, value=profile, updated_by_user_id=user_id))
    else:
        row.value = profile
        row.updated_by_user_id = user_id
    await session.flush()
    return ProfileState(profile, False, "database")
