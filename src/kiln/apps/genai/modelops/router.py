"""`/v1/modelops/*` and `/v1/models/*`: credentials here, models/sharing/inference in routes_models."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.deps import CurrentUser, KernelDep, SessionDep
from kiln.apps.genai.errors import genai_router
from kiln.apps.genai.modelops import credentials
from kiln.apps.genai.modelops.routes_hub import router as hub_router
from kiln.apps.genai.modelops.routes_models import router as models_router
from kiln.apps.genai.modelops.schemas import CredentialBody

router = genai_router(tags=["genai"])


@router.get("/v1/modelops/credentials")
async def list_credentials(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    rows = await credentials.list_credentials(session, user)
    return {"credentials": [credentials.credential_dto(row) for row in rows]}


@router.post("/v1/modelops/credentials", status_code=201)
async def create_credential(
    body: CredentialBody, user: CurrentUser, session: SessionDep, kernel: KernelDep
) -> dict[str, Any]:
    row = await credentials.create_credential(
        session,
        kernel,
        user,
        provider=body.provider,
        display_name=body.display_name,
        api_key=body.api_key,
        api_base_url=body.api_base_url,
        scope=body.credential_scope,
    )
    await session.commit()
    return {"credential": credentials.credential_dto(row)}


@router.post("/v1/modelops/credentials/{credential_id}/revoke")
async def revoke_credential(credential_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    row = await credentials.get_credential(session, user, credential_id)
    await credentials.revoke_credential(session, row)
    await session.commit()
    return {"credential": credentials.credential_dto(row)}


@router.delete("/v1/modelops/credentials/{credential_id}")
async def delete_credential(credential_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    row = await credentials.get_credential(session, user, credential_id)
    await credentials.revoke_credential(session, row)
    await session.delete(row)
    await session.commit()
    return {"deleted": True, "credential_id": credential_id}


router.include_router(models_router)
router.include_router(hub_router)
