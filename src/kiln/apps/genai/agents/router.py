"""`/v1/agent-projects/*` (owner or superadmin; others get 404) and `/v1/agent-executions*`."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from kiln.apps.genai.agents import executions, projects
from kiln.apps.genai.deps import CurrentUser, KernelDep, SessionDep
from kiln.apps.genai.errors import error_response, genai_router
from kiln.apps.genai.playgrounds.router import JsonBody, body_object

router = genai_router(tags=["genai agents"])


@router.get("/v1/agent-projects")
async def list_projects(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"agent_projects": [projects.project_dto(p) for p in await projects.list_projects(session, user)]}


@router.post("/v1/agent-projects", status_code=201)
async def create_project(user: CurrentUser, session: SessionDep, body: Any = JsonBody) -> dict[str, Any]:
    row = await projects.create_project(session, user, body_object(body))
    await session.commit()
    return {"agent_project": projects.project_dto(row)}


@router.get("/v1/agent-projects/{project_id}")
async def get_project(project_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"agent_project": projects.project_dto(await projects.get_project(session, user, project_id))}


@router.put("/v1/agent-projects/{project_id}")
async def update_project(
    project_id: str, user: CurrentUser, session: SessionDep, body: Any = JsonBody
) -> dict[str, Any]:
    row = await projects.update_project(session, user, project_id, body_object(body))
    await session.commit()
    return {"agent_project": projects.project_dto(row)}


@router.post("/v1/agent-projects/{project_id}/validate")
async def validate_project(project_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    row, result = await projects.validate_project(session, user, project_id)
    await session.commit()
    return {"agent_project": projects.project_dto(row), "validation": result}


@router.post("/v1/agent-projects/{project_id}/publish")
async def publish_project(project_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    row, result = await projects.publish_project(session, user, project_id)
    await session.commit()
    return {"agent_project": projects.project_dto(row), "publish_result": result}


@router.post("/v1/agent-executions")
async def create_execution(
    user: CurrentUser, session: SessionDep, kernel: KernelDep, body: Any = JsonBody
) -> JSONResponse:
    row = await executions.create(session, kernel, user, body_object(body))
    settings = executions.settings_of(kernel)
    row = await executions.wait(kernel, row.id, settings.agent_sync_wait_seconds)
    dto = executions.execution_dto(row)
    error = dto["error"]
    if error:
        return error_response(
            int(error.get("status_code") or 500),
            error["code"],
            error["message"],
            {**(error.get("details") or {}), "execution_id": row.id, "execution": dto},
        )
    return JSONResponse({"execution": dto}, status_code=201 if row.status == "succeeded" else 202)


@router.get("/v1/agent-executions/{execution_id}")
async def get_execution(execution_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return {"execution": executions.execution_dto(await executions.owned(session, user, execution_id))}
