"""Typed FastAPI dependencies for the engine's parts (`SessionDep`, `JobsDep`, ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.core.blobs import BlobStore
from kiln.core.events import EventBus
from kiln.core.jobs.service import JobService
from kiln.core.kernel import Kernel
from kiln.settings import Settings


def get_kernel(request: Request) -> Kernel:
    return request.app.state.kernel


def get_settings(request: Request) -> Settings:
    return request.app.state.kernel.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.kernel.db.session() as session:
        yield session


KernelDep = Annotated[Kernel, Depends(get_kernel)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(lambda request: request.app.state.kernel.blobs)]
JobsDep = Annotated[JobService, Depends(lambda request: request.app.state.kernel.jobs)]
EventsDep = Annotated[EventBus, Depends(lambda request: request.app.state.kernel.events)]
