"""The job running one agent execution."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.agents.engine import run_execution
from kiln.apps.genai.agents.executions import JOB_KIND
from kiln.core.jobs import JobContext, job_handler


@job_handler(JOB_KIND, surface="genai", max_attempts=1)
async def agent_execution(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    execution_id = str(payload["execution_id"])
    return {"execution_id": execution_id, "status": await run_execution(ctx.kernel, execution_id)}
