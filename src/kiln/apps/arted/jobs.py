"""The `arted.run` job: one run of the four stages (see `pipeline.py`)."""

from __future__ import annotations

from typing import Any

from kiln.apps.arted import pipeline
from kiln.core.jobs import JobContext, job_handler


@job_handler("arted.run", surface="arted", max_attempts=1)
async def run(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await pipeline.execute(ctx.kernel, str(payload["run_id"]))
