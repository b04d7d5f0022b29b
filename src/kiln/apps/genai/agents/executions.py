"""Agent executions: checked at request time (agent published, execute permission, runtime
profile, tools, model bound, retrieval index bound in the active deployment), persisted as
`queued`, and run by the in-process engine as an engine job (`genai.agent_execution`).

POST waits up to `KILN_AGENT_SYNC_WAIT_SECONDS` for the outcome (the reference answers
synchronously) and otherwise answers 202 with the running record; GET is owner-only (another
user's execution is 404; superadmins see all). Errors use the execution taxonomy:
`EXEC_POLICY_DENIED`, `EXEC_RUNTIME_PROFILE_BLOCKED`, `EXEC_AGENT_NOT_FOUND`,
`EXEC_AGENT_VERSION_NOT_FOUND`, `EXEC_MODEL_NOT_ALLOWED`, `EXEC_TOOL_NOT_ALLOWED`, `EXEC_TIMEOUT`,
`EXEC_UPSTREAM_UNAVAILABLE`, `EXEC_INTERNAL_ERROR`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.agents.config import AgentSettings
from kiln.apps.genai.agents.models import AgentExecution
from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.inference import prepare as prepare_model
from kiln.apps.genai.playgrounds.service import bound_knowledge_bases
from kiln.apps.genai.policy.service import decide
from kiln.apps.genai.registry.models import GenaiEntityShare, GenaiRegistryEntity
from kiln.apps.genai.registry.service import current_version
from kiln.apps.genai.runtime.service import is_offline
from kiln.core.auth import User

JOB_KIND = "genai.agent_execution"
STATUS = {
    "EXEC_POLICY_DENIED": 403,
    "EXEC_RUNTIME_PROFILE_BLOCKED": 403,
    "EXEC_AGENT_NOT_FOUND": 404,
    "EXEC_AGENT_VERSION_NOT_FOUND": 404,
    "EXEC_MODEL_NOT_ALLOWED": 403,
    "EXEC_TOOL_NOT_ALLOWED": 403,
    "EXEC_TIMEOUT": 504,
    "EXEC_UPSTREAM_UNAVAILABLE": 503,
    "EXEC_INTERNAL_ERROR": 500,
    "EXEC_INVALID_INPUT": 400,
}
BLOCKING = {"EXEC_POLICY_DENIED", "EXEC_RUNTIME_PROFILE_BLOCKED", "EXEC_MODEL_NOT_ALLOWED", "EXEC_TOOL_NOT_ALLOWED"}
TRANSPORTS = ("mcp", "sandbox_http")
MAX_INPUT_MESSAGES = 100
MAX_TEXT = 20000
RETRIEVAL_METHODS = ("semantic", "keyword", "hybrid")


class ExecError(GenaiError):
    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(STATUS.get(code, 500), code, message, details)


def settings_of(kernel: Any) -> AgentSettings:
    return kernel.surface_settings(AgentSettings)


def parse_input(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ExecError("EXEC_INVALID_INPUT", "input must be an object")
    out: dict[str, Any] = {}
    prompt = value.get("prompt")
    if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_TEXT):
        raise ExecError("EXEC_INVALID_INPUT", f"input.prompt must be text (at most {MAX_TEXT} characters)")
    messages = value.get("messages") or []
    if (
        not isinstance(messages, list)
        or len(messages) > MAX_INPUT_MESSAGES
        or not all(
            isinstance(m, dict)
            and m.get("role") in ("user", "assistant")
            and isinstance(m.get("content"), str)
            and len(m["content"]) <= MAX_TEXT
            for m in messages
        )
    ):
        raise ExecError("EXEC_INVALID_INPUT", "input.messages holds {role: user|assistant, content} items")
    if not (prompt or "").strip() and not any(m["role"] == "user" for m in messages):
        raise ExecError("EXEC_INVALID_INPUT", "input needs a prompt or a user message")
    out["prompt"], out["messages"] = prompt, [{"role": m["role"], "content": m["content"]} for m in messages]
    if (model := value.get("model")) is not None:
        if not isinstance(model, str) or not 0 < len(model) <= 200:
            raise ExecError("EXEC_INVALID_INPUT", "input.model must be a model id")
        out["model"] = model
    if (retrieval := value.get("retrieval")) is not None:
        out["retrieval"] = _retrieval(retrieval)
    return out


def _retrieval(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("index"), str) or not value["index"]:
        raise ExecError("EXEC_INVALID_INPUT", "input.retrieval needs an index")
    top_k = value.get("top_k", 5)
    method = value.get("search_method", "semantic")
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 20 or method not in RETRIEVAL_METHODS:
        raise ExecError("EXEC_INVALID_INPUT", "input.retrieval: top_k 1..20, search_method semantic|keyword|hybrid")
    query = value.get("query")
    if query is not None and (not isinstance(query, str) or len(query) > 4000):
        raise ExecError("EXEC_INVALID_INPUT", "input.retrieval.query must be text")
    filters = value.get("filters") or {}
    if not isinstance(filters, dict):
        raise ExecError("EXEC_INVALID_INPUT", "input.retrieval.filters must be an object")
    return {"index": value["index"][:200], "top_k": top_k, "search_method": method, "query": query, "filters": filters}


async def can_execute(session: AsyncSession, user: User, entity: GenaiRegistryEntity) -> bool:
    if user.role == "superadmin":
        return True
    decision = await decide(session, user.id, entity.entity_id, "execute")
    if decision == "deny":
        return False
    if entity.owner_user_id == user.id or decision == "allow":
        return True
    share = await session.scalar(
        select(GenaiEntityShare.id)
        .where(
            GenaiEntityShare.entity_id == entity.entity_id,
            GenaiEntityShare.permission.in_(("execute", "admin")),
            or_(
                GenaiEntityShare.grantee_type == "public",
                (GenaiEntityShare.grantee_type == "user") & (GenaiEntityShare.grantee_id == user.id),
            ),
        )
        .limit(1)
    )
    return share is not None


async def load_agent(session: AsyncSession, agent_id: str) -> tuple[GenaiRegistryEntity, Any]:
    entity = await session.get(GenaiRegistryEntity, agent_id) if 0 < len(agent_id) <= 200 else None
    if entity is None or entity.entity_type != "agent":
        raise ExecError("EXEC_AGENT_NOT_FOUND", f"Agent {agent_id[:200]} not found")
    version = await current_version(session, agent_id)
    if version is None or version.published_at is None or entity.status != "published":
        raise ExecError(
            "EXEC_AGENT_VERSION_NOT_FOUND", "The agent has no published current version", {"agent_id": agent_id}
        )
    return entity, version


async def resolve_tools(session: AsyncSession, spec: dict[str, Any], offline: bool) -> dict[str, dict[str, Any]]:
    """The agent's tools by function name, refused when not allowed here (transport, offline)."""
    policy = (spec.get("tool_policy") or {}).get("tools") or {}
    tools: dict[str, dict[str, Any]] = {}
    for ref in spec.get("tool_refs") or []:
        if policy.get(ref, {}).get("enabled", True) is False:
            continue
        version = await current_version(session, ref)
        tool = (version.spec or {}) if version is not None else None
        if tool is None or tool.get("transport") not in TRANSPORTS or tool.get("connection_profile_ref") != "default":
            raise ExecError("EXEC_TOOL_NOT_ALLOWED", f"Tool {ref} is not available", {"tool_id": ref})
        if offline and not tool.get("offline_compatible"):
            raise ExecError(
                "EXEC_TOOL_NOT_ALLOWED",
                f"Tool {ref} needs the online runtime profile",
                {"tool_id": ref, "runtime_profile": "offline"},
            )
        tools[str(tool.get("tool_name") or ref)] = {
            "id": ref,
            **tool,
            "max_calls": policy.get(ref, {}).get("max_calls"),
        }
    return tools


async def check_request(
    session: AsyncSession, kernel: Any, user: User, agent_id: str, data: dict[str, Any]
) -> tuple[str, str, bool]:
    """Everything refusable before the job runs; returns (agent version, model id, offline)."""
    entity, version = await load_agent(session, agent_id)
    if not await can_execute(session, user, entity):
        raise ExecError("EXEC_POLICY_DENIED", "You may not execute this agent", {"agent_id": agent_id})
    spec = version.spec or {}
    offline = await is_offline(session, genai_settings(kernel))
    if offline and (spec.get("runtime_constraints") or {}).get("internet_required"):
        raise ExecError("EXEC_RUNTIME_PROFILE_BLOCKED", "The agent needs the internet; the runtime profile is offline")
    await resolve_tools(session, spec, offline)
    model_id = data.get("model") or spec.get("default_model_ref")
    if not model_id:
        raise ExecError("EXEC_MODEL_NOT_ALLOWED", "No model: the agent has no default and input.model is empty")
    try:
        await prepare_model(session, kernel, user, model_id)
    except GenaiError as exc:
        raise ExecError(
            "EXEC_MODEL_NOT_ALLOWED",
            f"Model {model_id} cannot be used: {exc.message}",
            {"model_id": model_id, "reason": exc.code},
        ) from None
    if (retrieval := data.get("retrieval")) is not None:
        bound, _ = await bound_knowledge_bases(session)
        if not any(kb.index_name == retrieval["index"] for kb in bound):
            raise ExecError(
                "EXEC_POLICY_DENIED",
                "The retrieval index is not a knowledge base bound in the active deployment",
                {"index": retrieval["index"]},
            )
    return version.version, model_id, offline


def execution_dto(row: AgentExecution) -> dict[str, Any]:
    result = dict(row.result_json or {})
    error = result.pop("error", None)
    return {
        "id": row.id,
        "agent_id": row.agent_id,
        "agent_version": row.agent_version,
        "status": row.status,
        "runtime_profile": row.runtime_profile,
        "requested_by_user_id": row.requested_by_user_id,
        "input": row.input_json,
        "result": result or None,
        "error": error,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


async def create(session: AsyncSession, kernel: Any, user: User, body: dict[str, Any]) -> AgentExecution:
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str) or not agent_id:
        raise ExecError("EXEC_INVALID_INPUT", "agent_id is required")
    data = parse_input(body.get("input"))
    version, model_id, offline = await check_request(session, kernel, user, agent_id, data)
    row = AgentExecution(
        agent_id=agent_id,
        agent_version=version,
        status="queued",
        runtime_profile="offline" if offline else "online",
        requested_by_user_id=user.id,
        input_json={**data, "model": model_id},
        result_json={},
    )
    session.add(row)
    await session.flush()
    job = await kernel.jobs.create(session, JOB_KIND, {"execution_id": row.id}, owner_id=user.id, max_attempts=1)
    row.job_id = str(job.id)
    await session.commit()
    await kernel.jobs.kick(job.id)
    return row


async def owned(session: AsyncSession, user: User, execution_id: str) -> AgentExecution:
    row = await session.get(AgentExecution, execution_id) if len(execution_id) <= 64 else None
    if row is None or not (row.requested_by_user_id == user.id or user.role == "superadmin"):
        raise GenaiError(404, "execution_not_found", "Agent execution not found")
    return row


async def wait(kernel: Any, execution_id: str, seconds: float) -> AgentExecution:
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        async with kernel.db.session() as session:
            row = await session.get(AgentExecution, execution_id)
            assert row is not None
            if row.status in ("succeeded", "failed", "blocked") or time.monotonic() >= deadline:
                return row
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
