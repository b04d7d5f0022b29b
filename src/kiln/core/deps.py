"""Typed FastAPI dependencies for the engine's parts (`SessionDep`, `JobsDep`, ...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from kiln.core.blobs import BlobStore
from kiln.core.events import EventBus
from kiln.core.jobs.service import JobService
from kiln.core.kernel import Kernel
from kiln.settings import Settings


async def get_kernel(request: Request) -> Kernel:  # async: a plain `def` dependency costs a thread-pool hop
    return request.app.state.kernel


def get_settings(request: Request) -> Settings:
    return request.app.state.kernel.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.kernel.db.session() as session:
        yield session


def get_blobs(request: Request) -> BlobStore:
    return request.app.state.kernel.blobs


def get_jobs(request: Request) -> JobService:
    return request.app.state.kernel.jobs


def get_events(request: Request) -> EventBus:
    return request.app.state.kernel.events


def get_root_path(conn: HTTPConnection) -> str:
    """The prefix the request came in on (`/media` under the surface's mount, "" at the root):
    put it in front of every URL a response body carries."""
    return conn.scope.get("root_path", "")


KernelDep = Annotated[Kernel, Depends(get_kernel)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
EventsDep = Annotated[EventBus, Depends(get_events)]
RootPathDep = Annotated[str, Depends(get_root_path)]
