"""Tool dispatch for the agent engine: `sandbox_http` tools run in the bubblewrap sandbox, `mcp`
tools through the MCP server named by `KILN_MCP_URL` (unset: the tool is unavailable and its
result says so; an MCP server that cannot be reached fails the execution with
`EXEC_UPSTREAM_UNAVAILABLE`). Every call's arguments, outcome and duration go to the trace."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from kiln.apps.genai.agents.config import AgentSettings
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.providers.http import ProviderError
from kiln.providers.sandbox import SandboxSettings, SandboxUnavailable, run_python
from kiln.providers.tools import MCPClient, MCPToolError

MAX_TOOL_RESULT_CHARS = 16000


class UpstreamDown(Exception):
    def __init__(self, tool: str, message: str):
        super().__init__(message)
        self.tool = tool
        self.message = message


def _parse_arguments(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


async def _python_exec(kernel: Any, tool: dict[str, Any], args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    code = args.get("code")
    if not isinstance(code, str) or not code.strip():
        return "error", {"error": "invalid_arguments", "message": "python_exec needs code (text)"}
    base = kernel.surface_settings(SandboxSettings)
    timeout = (tool.get("safety_policy") or {}).get("timeout_seconds")
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        base = base.model_copy(
            update={
                "wall_seconds": min(base.wall_seconds, float(timeout)),
                "cpu_seconds": min(base.cpu_seconds, max(1, math.ceil(timeout))),
            }
        )
    try:
        result = await run_python(code, base)
    except SandboxUnavailable as exc:
        return "unavailable", {"error": "sandbox_unavailable", "message": str(exc)}
    return ("ok" if result.exit_code == 0 else "error"), result.to_dict()


async def _mcp(kernel: Any, tool: dict[str, Any], args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    settings = kernel.surface_settings(AgentSettings)
    name = str(tool.get("tool_name") or "")
    if not settings.mcp_url:
        return "unavailable", {
            "error": "tool_unavailable",
            "message": f"{name} is unavailable: no MCP server is configured (KILN_MCP_URL)",
        }
    client = MCPClient(settings.mcp_url, timeout=settings.mcp_timeout_seconds, offline_guard=offline_guard(kernel))
    try:
        await client.initialize()
        result = await client.call_tool(name, args)
    except MCPToolError as exc:
        return "error", {"error": "tool_failed", "message": exc.message}
    except ProviderError as exc:
        raise UpstreamDown(name, exc.message) from None
    finally:
        await client.aclose()
    return "ok", result["structured"] if isinstance(result["structured"], dict) else {"text": result["text"]}


async def dispatch(kernel: Any, tool: dict[str, Any], call_id: str, raw_arguments: Any) -> dict[str, Any]:
    """Run one tool call; the trace entry (`result` is also what the model is shown)."""
    started = time.perf_counter()
    args = _parse_arguments(raw_arguments)
    if args is None:
        status, result = "error", {"error": "invalid_arguments", "message": "arguments must be a JSON object"}
    elif tool.get("transport") == "sandbox_http":
        status, result = await _python_exec(kernel, tool, args)
    else:
        status, result = await _mcp(kernel, tool, args)
    return {
        "id": call_id,
        "tool_id": tool["id"],
        "tool_name": tool.get("tool_name"),
        "arguments": args,
        "status": status,
        "result": result,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def tool_message(call_id: str, result: dict[str, Any]) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result, default=str)[:MAX_TOOL_RESULT_CHARS]}
