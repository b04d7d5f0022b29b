"""The typed dependencies resolve to the kernel's parts (and are not mistaken for query parameters)."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from kiln.core.deps import BlobsDep, EventsDep, JobsDep, KernelDep, SessionDep, SettingsDep


async def test_dependencies_resolve(kernel):
    app = FastAPI()
    app.state.kernel = kernel

    @app.get("/parts")
    async def parts(k: KernelDep, s: SettingsDep, db: SessionDep, b: BlobsDep, j: JobsDep, e: EventsDep) -> dict:
        return {
            "same": k is kernel
            and s is kernel.settings
            and b is kernel.blobs
            and j is kernel.jobs
            and e is kernel.events,
            "session": db.bind is not None,
        }

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as http:
        response = await http.get("/parts")
    assert response.status_code == 200, response.text
    assert response.json() == {"same": True, "session": True}
