"""Job handlers and periodic tasks of the genai surface, registered on import (one module per domain)."""

from __future__ import annotations

from kiln.apps.genai.agents import jobs as agent_jobs  # noqa: F401  (genai.agent_execution)
from kiln.apps.genai.context import jobs as context_jobs  # noqa: F401  (genai.context.sync)
from kiln.apps.genai.modelops import jobs as modelops_jobs  # noqa: F401  (genai.model_download)
