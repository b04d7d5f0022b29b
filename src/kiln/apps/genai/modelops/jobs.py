"""ModelOps job handlers: Hugging Face model downloads."""

from __future__ import annotations

from typing import Any

from kiln.apps.genai.modelops.hub import DOWNLOAD_KIND, run_download
from kiln.core.jobs import JobContext, job_handler


@job_handler(DOWNLOAD_KIND, surface="genai", max_attempts=1)
async def model_download(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    return await run_download(ctx, str(payload["download_id"]))
