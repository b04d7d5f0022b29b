"""Typed catalog of agents and tools over the registry: each create/update writes a registry
version (v1, v2, ...) so runtime consumers still resolve from the registry. Platform agents can be
edited but never deleted; user agents are deleted by their owner or a superadmin."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.registry import service as registry
from kiln.apps.genai.registry.models import GenaiEntityShare, GenaiRegistryEntity, GenaiRegistryVersion
from kiln.core.auth import User

PLATFORM_AGENTS = frozenset({"agent.knowledge_chat"})
TRANSPORTS = ("mcp", "sandbox_http")
BUILTIN_TOOLS: dict[str, dict[str, Any]] = {
    "tool.web_search": {
        "name": "Web search",
        "description": "Search the web through the MCP gateway.",
        "transport": "mcp",
        "connection_profile_ref": "default",
        "tool_name": "web_search",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1, "maximum": 10}},
            "required": ["query"],
        },
        "output_schema": {"type": "object"},
        "safety_policy": {"network_access": True},
        "offline_compatible": False,
    },
    "tool.python_exec": {
        "name": "Python execution",
        "description": "Run a short Python snippet in the sandbox.",
        "transport": "sandbox_http",
        "connection_profile_ref": "default",
        "tool_name": "python_exec",
        "input_schema": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        "output_schema": {"type": "object"},
        "safety_policy": {"timeout_seconds": 5, "network_access": False, "allow_imports": False},
        "offline_compatible": True,
    },
}
KNOWLEDGE_CHAT = {
    "name": "Knowledge chat",
    "description": "Answers from the deployment's knowledge bases, with citations.",
    "instructions": "Answer using only the retrieved references; cite them as [n]. Say so when they do not answer.",
    "default_model_ref": None,
    "tool_refs": [],
    "runtime_constraints": {"internet_required": False, "sandbox_required": False},
}


def _text(spec: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = spec.get(name, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        raise GenaiError(400, f"invalid_{name}", f"{name} is required (at most {limit} characters)")
    return value.strip()


def agent_spec(body: dict[str, Any]) -> dict[str, Any]:
    refs = body.get("tool_refs") or []
    if not isinstance(refs, list) or len(refs) > 50 or not all(isinstance(r, str) and len(r) <= 200 for r in refs):
        raise GenaiError(400, "invalid_tool_refs", "tool_refs must be a list of tool ids")
    constraints = body.get("runtime_constraints") or {}
    if not isinstance(constraints, dict) or not all(
        isinstance(constraints.get(k, False), bool) for k in ("internet_required", "sandbox_required")
    ):
        raise GenaiError(400, "invalid_runtime_constraints", "runtime_constraints holds two booleans")
    model = body.get("default_model_ref")
    if model is not None and (not isinstance(model, str) or len(model) > 200):
        raise GenaiError(400, "invalid_default_model_ref", "default_model_ref must be a model id or null")
    return {
        "name": _text(body, "name", 200),
        "description": _text(body, "description", 4000, False),
        "instructions": _text(body, "instructions", 20000),
        "default_model_ref": model or None,
        "tool_refs": list(dict.fromkeys(refs)),
        "runtime_constraints": {
            "internet_required": bool(constraints.get("internet_required", False)),
            "sandbox_required": bool(constraints.get("sandbox_required", False)),
        },
    }


def tool_spec(body: dict[str, Any]) -> dict[str, Any]:
    transport = body.get("transport")
    if transport not in TRANSPORTS:
        raise GenaiError(400, "invalid_transport", "transport must be mcp or sandbox_http")
    if body.get("connection_profile_ref", "default") != "default":
        raise GenaiError(400, "invalid_connection_profile_ref", "connection_profile_ref must be default")
    objects = {}
    for name in ("input_schema", "output_schema", "safety_policy"):
        value = body.get(name) or {}
        if not isinstance(value, dict):
            raise GenaiError(400, f"invalid_{name}", f"{name} must be an object")
        objects[name] = value
    offline = body.get("offline_compatible", False)
    if not isinstance(offline, bool):
        raise GenaiError(400, "invalid_offline_compatible", "offline_compatible must be a boolean")
    return {
        "name": _text(body, "name", 200),
        "description": _text(body, "description", 4000, False),
        "transport": transport,
        "connection_profile_ref": "default",
        "tool_name": _text(body, "tool_name", 200),
        **objects,
        "offline_compatible": offline,
    }


def item_dto(entity: GenaiRegistryEntity, version: GenaiRegistryVersion | None) -> dict[str, Any]:
    out = {
        "id": entity.entity_id,
        "entity": {
            "id": entity.entity_id,
            "type": entity.entity_type,
            "owner_user_id": entity.owner_user_id,
            "visibility": entity.visibility,
        },
        "current_version": version.version if version else None,
        "status": entity.status,
        "published": entity.status == "published",
        "published_at": version.published_at.isoformat() if version and version.published_at else None,
        "spec": version.spec if version else {},
    }
    if entity.entity_type == "agent":
        platform = entity.entity_id in PLATFORM_AGENTS
        out.update(agent_kind="platform" if platform else "user", is_platform_agent=platform)
    return out


async def list_items(session: AsyncSession, kind: str) -> list[dict[str, Any]]:
    rows = await session.execute(registry.with_current(kind).order_by(GenaiRegistryEntity.entity_id))
    return [item_dto(e, v) for e, v in rows]


async def get_item(session: AsyncSession, user: User, kind: str, item_id: str) -> tuple[GenaiRegistryEntity, Any]:
    entity = await registry.get_entity(session, user, kind, item_id)
    return entity, await registry.current_version(session, entity.entity_id)


def _spec_of(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return agent_spec(body) if kind == "agent" else tool_spec(body)


async def create_item(session: AsyncSession, user: User, kind: str, body: dict[str, Any]):
    if not isinstance(body.get("publish"), bool):
        raise GenaiError(400, "invalid_publish", "publish (boolean) is required")
    spec = _spec_of(kind, body)
    item_id = str(body.get("id") or "").strip() or f"{kind}.{registry.new_slug(spec['name'])}"
    return await registry.create_entity(
        session,
        user,
        kind,
        {"id": item_id, "visibility": body.get("visibility"), "publish": body["publish"], "spec": spec},
    )


async def update_item(session: AsyncSession, user: User, kind: str, item_id: str, body: dict[str, Any]):
    entity = await registry.get_entity(session, user, kind, item_id)
    if not isinstance(body.get("publish"), bool):
        raise GenaiError(400, "invalid_publish", "publish (boolean) is required")
    spec = _spec_of(kind, body)
    if (visibility := body.get("visibility")) is not None:
        if visibility not in registry.VISIBILITIES:
            raise GenaiError(400, "invalid_visibility", "visibility must be private, unlisted or public")
        entity.visibility = visibility
    version = await registry.add_version(
        session, entity, await registry.next_version(session, entity.entity_id), spec, body["publish"], user.id
    )
    return entity, version


async def delete_agent(session: AsyncSession, user: User, agent_id: str) -> None:
    entity = await registry.get_entity(session, user, "agent", agent_id)
    if entity.entity_id in PLATFORM_AGENTS:
        raise GenaiError(
            409,
            "platform_agent_delete_forbidden",
            "Platform agents cannot be deleted; publish a draft version to deactivate it",
        )
    if not registry.can_manage(user, entity):
        raise GenaiError(403, "forbidden", "Only the owner or a superadmin can delete this agent")
    await session.delete(entity)
    await session.flush()


async def validate_item(session: AsyncSession, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    errors: list[str] = []
    warnings: list[str] = []
    try:
        _spec_of(kind, spec)
    except GenaiError as exc:
        errors.append(exc.message)
    if kind == "tool":
        return {
            "valid": not errors,
            "errors": errors,
            "warnings": warnings,
            "runtime_checks": {
                "transport": spec.get("transport"),
                "offline_compatible": bool(spec.get("offline_compatible")),
            },
        }
    resolved = []
    internet = bool((spec.get("runtime_constraints") or {}).get("internet_required"))
    sandbox = bool((spec.get("runtime_constraints") or {}).get("sandbox_required"))
    for ref in spec.get("tool_refs") or []:
        tool = await session.get(GenaiRegistryEntity, ref)
        version = await registry.current_version(session, ref) if tool and tool.entity_type == "tool" else None
        if version is None:
            errors.append(f"Tool {ref} does not exist")
            continue
        tspec = version.spec or {}
        resolved.append(
            {
                "id": ref,
                "name": tspec.get("name"),
                "transport": tspec.get("transport"),
                "offline_compatible": bool(tspec.get("offline_compatible")),
            }
        )
        internet = internet or not tspec.get("offline_compatible", False)
        sandbox = sandbox or tspec.get("transport") == "sandbox_http"
    if spec.get("default_model_ref") is None:
        warnings.append("No default model: callers must choose one")
    return {
        "valid": not errors,
        "errors": errors,
        "warnings": warnings,
        "resolved_tools": resolved,
        "derived_runtime_requirements": {"internet_required": internet, "sandbox_required": sandbox},
    }


async def ensure_builtin_entities(session: AsyncSession) -> None:
    """Seed the platform agent (with a public execute share) and the two built-in tools."""
    from kiln.core.db import utcnow

    seeds = [("agent.knowledge_chat", "agent", KNOWLEDGE_CHAT)] + [(k, "tool", v) for k, v in BUILTIN_TOOLS.items()]
    for entity_id, kind, spec in seeds:
        if await session.get(GenaiRegistryEntity, entity_id) is not None:
            continue
        now = utcnow()
        session.add(
            GenaiRegistryEntity(
                entity_id=entity_id,
                entity_type=kind,
                owner_user_id=None,
                visibility="public" if kind == "tool" else "private",
                status="published",
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()
        session.add(
            GenaiRegistryVersion(
                entity_id=entity_id, version="v1", spec=spec, is_current=True, published_at=now, created_at=now
            )
        )
        if kind == "agent":
            session.add(
                GenaiEntityShare(entity_id=entity_id, grantee_type="public", grantee_id=None, permission="execute")
            )
    await session.flush()
