"""The job handler draining a knowledge base's sync runs."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.context.sync import JOB_KIND, drain
from kiln.core.jobs import JobContext, job_handler


@job_handler(JOB_KIND, surface="genai", max_attempts=1)
async def context_sync(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await drain(ctx.kernel, str(payload["knowledge_base_id"]), ctx.progress)
