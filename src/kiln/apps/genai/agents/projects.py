"""Agent projects: the builder's authoring surface. Every save is a new version; validation
records the version it passed for; publish requires a passing validation of the current version
and compiles the project into a catalog agent `agent.project.<id>` whose registry spec keeps the
workflow definition, the tool policy and the instructions (the engine sends them to the model)."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.agents.models import AgentProject, AgentProjectVersion
from kiln.apps.genai.catalog import service as catalog
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.registry import service as registry
from kiln.apps.genai.registry.models import GenaiRegistryEntity
from kiln.core.auth import User
from kiln.core.db import utcnow

PROJECT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
MAX_DOC_BYTES = 24 * 1024
MAX_DEPTH = 12
POLICY_LIMITS = {"max_rounds": (1, 20), "max_tool_calls": (0, 100), "timeout_seconds": (1, 3600)}
MAX_LISTED = 500


def _depth(value: Any, level: int = 0) -> int:
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()] or [level + 1])
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value] or [level + 1])
    return level


def _document(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name) or {}
    if not isinstance(value, dict):
        raise GenaiError(400, f"invalid_{name}", f"{name} must be an object")
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        raise GenaiError(400, f"invalid_{name}", f"{name} must be JSON") from None
    if size > MAX_DOC_BYTES or _depth(value) > MAX_DEPTH:
        raise GenaiError(400, f"invalid_{name}", f"{name} is limited to {MAX_DOC_BYTES} bytes and depth {MAX_DEPTH}")
    return value


def parse_spec(body: dict[str, Any]) -> dict[str, Any]:
    spec = catalog.agent_spec(body)
    spec["workflow_definition"] = _document(body, "workflow_definition")
    spec["tool_policy"] = _document(body, "tool_policy")
    prompts = _document(body, "runtime_prompts")
    spec["runtime_prompts"] = {"retrieval_context": str(prompts.get("retrieval_context") or "")[:20000]}
    return spec


def project_dto(p: AgentProject) -> dict[str, Any]:
    return {
        "id": p.id,
        "owner_user_id": p.owner_user_id,
        "published_agent_id": p.published_agent_id,
        "current_version": p.current_version,
        "validated_version": p.validated_version,
        "visibility": p.visibility,
        "created_at": p.created_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
        "spec": p.spec,
    }


def _visibility(value: Any, user: User) -> str:
    visibility = value or "private"
    if visibility not in registry.VISIBILITIES:
        raise GenaiError(400, "invalid_visibility", "visibility must be private, unlisted or public")
    if visibility == "public" and not user.has_role("admin"):
        raise GenaiError(403, "insufficient_role", "Only admins can make agents public")
    return visibility


async def create_project(session: AsyncSession, user: User, body: dict[str, Any]) -> AgentProject:
    spec = parse_spec(body)
    project_id = str(body.get("id") or "").strip() or registry.new_slug(spec["name"]).replace(".", "-")[:60]
    if not PROJECT_ID.match(project_id):
        raise GenaiError(400, "invalid_agent_project_id", "id: lower-case letters, digits, '-' and '_' (max 80)")
    if await session.get(AgentProject, project_id) is not None:
        raise GenaiError(409, "agent_project_exists", "An agent project with this id exists")
    row = AgentProject(
        id=project_id,
        owner_user_id=user.id,
        visibility=_visibility(body.get("visibility"), user),
        spec=spec,
        current_version=1,
    )
    session.add(row)
    await session.flush()
    session.add(AgentProjectVersion(project_id=row.id, version=1, spec=spec, created_by_user_id=user.id))
    await session.flush()
    return row


async def get_project(session: AsyncSession, user: User, project_id: str) -> AgentProject:
    row = await session.get(AgentProject, project_id) if len(project_id) <= 120 else None
    if row is None or not (row.owner_user_id == user.id or user.role == "superadmin"):
        raise GenaiError(404, "agent_project_not_found", "Agent project not found")
    return row


async def list_projects(session: AsyncSession, user: User) -> list[AgentProject]:
    stmt = select(AgentProject).order_by(AgentProject.updated_at.desc()).limit(MAX_LISTED)
    if user.role != "superadmin":
        stmt = stmt.where(AgentProject.owner_user_id == user.id)
    return list((await session.execute(stmt)).scalars())


async def update_project(session: AsyncSession, user: User, project_id: str, body: dict[str, Any]) -> AgentProject:
    row = await get_project(session, user, project_id)
    spec = parse_spec(body)
    if "visibility" in body:
        row.visibility = _visibility(body["visibility"], user)
    row.spec = spec
    row.current_version += 1
    row.validated_version = None  # a new version must pass validation again before publishing
    row.updated_at = utcnow()
    session.add(
        AgentProjectVersion(project_id=row.id, version=row.current_version, spec=spec, created_by_user_id=user.id)
    )
    await session.flush()
    return row


def _policy_errors(spec: dict[str, Any]) -> list[str]:
    errors = []
    policy = spec.get("tool_policy") or {}
    for key, (low, high) in POLICY_LIMITS.items():
        value = policy.get(key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high
        ):
            errors.append(f"tool_policy.{key} must be a number in {low}..{high}")
    tools = policy.get("tools") or {}
    if not isinstance(tools, dict):
        return [*errors, "tool_policy.tools must map tool ids to rules"]
    for tool_id, rule in tools.items():
        if tool_id not in spec.get("tool_refs", []):
            errors.append(f"tool_policy.tools names {tool_id}, which is not in tool_refs")
        elif (
            not isinstance(rule, dict)
            or not isinstance(rule.get("enabled", True), bool)
            or not (isinstance(rule.get("max_calls", 0), int) and 0 <= rule.get("max_calls", 0) <= 100)
        ):
            errors.append(f"tool_policy.tools.{tool_id} takes enabled (bool) and max_calls (0..100)")
    steps = (spec.get("workflow_definition") or {}).get("steps")
    if steps is not None and (not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps)):
        errors.append("workflow_definition.steps must be a list of objects")
    return errors


async def validate_project(session: AsyncSession, user: User, project_id: str) -> tuple[AgentProject, dict]:
    row = await get_project(session, user, project_id)
    result = await catalog.validate_item(session, "agent", row.spec)
    result["errors"] = [*result["errors"], *_policy_errors(row.spec)]
    if row.spec.get("default_model_ref") is None:
        result["warnings"] = [w for w in result["warnings"] if "default model" not in w.lower()] + [
            "No default model: executions must name input.model"
        ]
    result["valid"] = not result["errors"]
    result["validated_version"] = row.current_version
    row.validated_version = row.current_version if result["valid"] else None
    await session.flush()
    return row, result


async def publish_project(session: AsyncSession, user: User, project_id: str) -> tuple[AgentProject, dict]:
    row = await get_project(session, user, project_id)
    if row.validated_version != row.current_version:
        raise GenaiError(
            409,
            "agent_project_not_validated",
            "Validate the current version successfully before publishing",
            {"current_version": row.current_version, "validated_version": row.validated_version},
        )
    spec = {**row.spec, "source_project": {"id": row.id, "version": row.current_version}}
    agent_id = f"agent.project.{row.id}"
    entity = await session.get(GenaiRegistryEntity, agent_id)
    if entity is None:
        entity, version = await registry.create_entity(
            session,
            user,
            "agent",
            {"id": agent_id, "visibility": row.visibility, "publish": True, "spec": spec},
            owner_id=row.owner_user_id,
        )
    else:
        entity.visibility = row.visibility
        version = await registry.add_version(
            session, entity, await registry.next_version(session, agent_id), spec, True, user.id
        )
    row.published_agent_id = agent_id
    row.updated_at = utcnow()
    await session.flush()
    return row, {
        "agent_id": agent_id,
        "catalog_agent": catalog.item_dto(entity, version),
        "published_at": version.published_at.isoformat() if version.published_at else None,
    }
