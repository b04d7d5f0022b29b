"""The in-process agent engine (no second HTTP service): an execution runs as an engine job.

Per execution: the agent's published spec is re-read; its `instructions` (and, for retrieval,
numbered references from the bound knowledge base) form the system message; the model is called
through the active `llm_inference` binding with the agent's tools as function definitions; tool
calls are dispatched and their results appended, for at most `max_rounds` model calls, at most
`max_tool_calls` tool calls (and each tool's `max_calls` from the tool policy) and within
`timeout_seconds` overall. The record keeps `output_text`, `tool_calls`, `model_calls` and
`retrieval_calls`, also when the execution fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kiln.apps.genai.agents import tools as toolbox
from kiln.apps.genai.agents.config import AgentSettings
from kiln.apps.genai.agents.executions import BLOCKING, ExecError, load_agent, resolve_tools
from kiln.apps.genai.agents.models import AgentExecution
from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.context.query import run_query
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.inference import prepare as prepare_model
from kiln.apps.genai.playgrounds import knowledge
from kiln.apps.genai.playgrounds.service import bound_knowledge_bases
from kiln.apps.genai.runtime.service import is_offline
from kiln.core.auth.models import User
from kiln.providers.http import ProviderError, ProviderProtocolError

log = logging.getLogger(__name__)


class Trace:
    def __init__(self) -> None:
        self.output_text = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.model_calls: list[dict[str, Any]] = []
        self.retrieval_calls: list[dict[str, Any]] = []

    def to_dict(self) -> dict[str, Any]:
        return {
            "output_text": self.output_text,
            "tool_calls": self.tool_calls,
            "model_calls": self.model_calls,
            "retrieval_calls": self.retrieval_calls,
            "embedding_calls": [],
        }


def _limit(policy: dict[str, Any], key: str, default: float) -> float:
    value = policy.get(key)
    return min(float(value), default) if isinstance(value, int | float) and not isinstance(value, bool) else default


async def _retrieve(session: Any, kernel: Any, spec: dict[str, Any], data: dict[str, Any], trace: Trace) -> str:
    retrieval = data.get("retrieval")
    if not retrieval:
        return ""
    bound, _ = await bound_knowledge_bases(session)
    kb = next((k for k in bound if k.index_name == retrieval["index"]), None)
    if kb is None:  # unbound since the request was accepted
        raise ExecError(
            "EXEC_POLICY_DENIED",
            "The retrieval index is not bound in the active deployment",
            {"index": retrieval["index"]},
        )
    last_user = next((m["content"] for m in reversed(data["messages"]) if m["role"] == "user"), "")
    query = retrieval.get("query") or data.get("prompt") or last_user
    body = {
        "query_text": query,
        "top_k": retrieval["top_k"],
        "search_method": retrieval["search_method"],
        **({"filters": retrieval["filters"]} if retrieval["filters"] else {}),
    }
    try:
        found = await run_query(session, kernel, kb, body)
    except GenaiError as exc:
        code = "EXEC_UPSTREAM_UNAVAILABLE" if exc.status >= 500 else "EXEC_POLICY_DENIED"
        raise ExecError(code, exc.message, {"reason": exc.code}) from None
    trace.retrieval_calls.append(
        {
            "index": kb.index_name,
            "knowledge_base_id": kb.id,
            "query": query,
            **found["retrieval"],
            "results": found["results"],
        }
    )
    refs = [{"reference_number": n, "title": r["title"], "_text": r["text"]} for n, r in enumerate(found["results"], 1)]
    extra = (spec.get("runtime_prompts") or {}).get("retrieval_context") or None
    return knowledge.system_prompt(extra, refs)


async def _prepare(kernel: Any, execution: AgentExecution, trace: Trace) -> dict[str, Any]:
    data = execution.input_json
    async with kernel.db.session() as session:
        user = await session.get(User, execution.requested_by_user_id)
        if user is None or not user.is_active:
            raise ExecError("EXEC_POLICY_DENIED", "The requesting user is no longer active")
        _, version = await load_agent(session, execution.agent_id)
        spec = version.spec or {}
        tools = await resolve_tools(session, spec, await is_offline(session, genai_settings(kernel)))
        try:
            _, provider, llm, runtime = await prepare_model(session, kernel, user, data["model"])
        except GenaiError as exc:
            raise ExecError("EXEC_MODEL_NOT_ALLOWED", exc.message, {"model_id": data["model"]}) from None
        context = await _retrieve(session, kernel, spec, data, trace)
    system = "\n\n".join(part for part in (spec.get("instructions"), context) if part)
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages += data["messages"]
    if (data.get("prompt") or "").strip():
        messages.append({"role": "user", "content": data["prompt"]})
    return {
        "spec": spec,
        "tools": tools,
        "llm": llm,
        "runtime": runtime,
        "provider": provider.slug,
        "messages": messages,
    }


async def _loop(kernel: Any, plan: dict[str, Any], settings: AgentSettings, trace: Trace) -> None:
    policy = plan["spec"].get("tool_policy") or {}
    max_rounds = int(_limit(policy, "max_rounds", settings.agent_max_rounds))
    max_calls = int(_limit(policy, "max_tool_calls", settings.agent_max_tool_calls))
    tools = plan["tools"]
    definitions = [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": tool.get("description") or tool.get("name") or name,
                "parameters": tool.get("input_schema") or {"type": "object"},
            },
        }
        for name, tool in tools.items()
    ]
    messages, llm = plan["messages"], plan["llm"]
    per_tool: dict[str, int] = {}
    for round_no in range(1, max_rounds + 1):
        body = llm.chat_body(messages, model=plan["runtime"], extra={"tools": definitions} if definitions else None)
        started = time.perf_counter()
        try:
            answer = await llm.http.json("POST", "/chat/completions", json=body)
            message = answer["choices"][0]["message"]
        except ProviderProtocolError as exc:
            raise ExecError("EXEC_UPSTREAM_UNAVAILABLE", f"LLM answer unusable: {exc.message}") from None
        except ProviderError as exc:
            raise ExecError(
                "EXEC_UPSTREAM_UNAVAILABLE",
                f"LLM provider {plan['provider']} failed: {exc.message}",
                {"provider": plan["provider"]},
            ) from None
        except (KeyError, IndexError, TypeError):
            raise ExecError("EXEC_UPSTREAM_UNAVAILABLE", "LLM answer without choices[0].message") from None
        calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        trace.model_calls.append(
            {
                "round": round_no,
                "model": answer.get("model"),
                "tool_call_count": len(calls),
                "finish_reason": answer["choices"][0].get("finish_reason"),
                "usage": answer.get("usage") or {},
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        )
        if not calls:
            trace.output_text = str(message.get("content") or "")
            return
        messages.append({"role": "assistant", "content": message.get("content") or "", "tool_calls": calls})
        for call in calls:
            call_id = str(call.get("id") or f"call_{len(trace.tool_calls)}")
            function = call.get("function") or {}
            name = str(function.get("name") or "")
            tool = tools.get(name)
            if tool is None:
                entry = {
                    "id": call_id,
                    "tool_name": name,
                    "status": "error",
                    "result": {"error": "unknown_tool", "message": f"{name[:100]} is not one of this agent's tools"},
                }
            elif len(trace.tool_calls) >= max_calls or (
                tool.get("max_calls") is not None and per_tool.get(name, 0) >= tool["max_calls"]
            ):
                entry = {
                    "id": call_id,
                    "tool_id": tool["id"],
                    "tool_name": name,
                    "status": "refused",
                    "result": {"error": "tool_call_limit_reached", "message": "No more calls of this tool"},
                }
            else:
                per_tool[name] = per_tool.get(name, 0) + 1
                try:
                    entry = await toolbox.dispatch(kernel, tool, call_id, function.get("arguments"))
                except toolbox.UpstreamDown as exc:
                    trace.tool_calls.append(
                        {
                            "id": call_id,
                            "tool_id": tool["id"],
                            "tool_name": name,
                            "status": "error",
                            "result": {"error": "upstream_unavailable"},
                        }
                    )
                    raise ExecError(
                        "EXEC_UPSTREAM_UNAVAILABLE",
                        f"Tool {exc.tool} is unreachable: {exc.message}",
                        {"tool_id": tool["id"]},
                    ) from None
            trace.tool_calls.append(entry)
            messages.append(toolbox.tool_message(call_id, entry["result"]))
    raise ExecError(
        "EXEC_INTERNAL_ERROR",
        f"The agent still called tools after {max_rounds} rounds",
        {"reason": "max_rounds_exceeded", "max_rounds": max_rounds},
    )


async def run_execution(kernel: Any, execution_id: str) -> str:
    """Run one queued execution to its end; returns the final status."""
    settings = kernel.surface_settings(AgentSettings)
    async with kernel.db.session() as session:
        row = await session.get(AgentExecution, execution_id)
        if row is None or row.status != "queued":
            return row.status if row else "missing"
        row.status = "running"
        await session.commit()
        session.expunge(row)
    trace = Trace()
    error: dict[str, Any] | None = None
    status = "succeeded"
    try:

        async def work() -> None:
            await _loop(kernel, await _prepare(kernel, row, trace), settings, trace)

        await asyncio.wait_for(work(), settings.agent_timeout_seconds)
    except ExecError as exc:
        status = "blocked" if exc.code in BLOCKING else "failed"
        error = {"code": exc.code, "message": exc.message, "status_code": exc.status, "details": exc.details or {}}
    except TimeoutError:
        status = "failed"
        error = {
            "code": "EXEC_TIMEOUT",
            "message": f"The execution exceeded {settings.agent_timeout_seconds} s",
            "status_code": 504,
            "details": {},
        }
    except Exception:
        log.exception("agent execution %s crashed", execution_id)
        status = "failed"
        error = {"code": "EXEC_INTERNAL_ERROR", "message": "Internal error", "status_code": 500, "details": {}}
    async with kernel.db.session() as session:
        stored = await session.get(AgentExecution, execution_id)
        assert stored is not None
        stored.status = status
        stored.result_json = {**trace.to_dict(), **({"error": error} if error else {})}
        await session.commit()
    return status
