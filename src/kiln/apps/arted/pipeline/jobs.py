"""The `arted.run` job: one run of the four stages (see `run.py`)."""

from __future__ import annotations

from typing import Any

from kiln.apps.arted.pipeline.run import execute
from kiln.core.jobs import JobContext, job_handler


@job_handler("arted.run", surface="arted", max_attempts=1)
async def run(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    # attempts counts this one: a second attempt (`kiln jobs retry`) starts over
    return await execute(
        ctx.kernel, str(payload["run_id"]), payload.get("run"), payload.get("opened"), fresh=ctx.job.attempts <= 1
    )
