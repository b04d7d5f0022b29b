"""HTTP routes of the genai catalog domain (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

from kiln.apps.genai.errors import genai_router

router = genai_router(tags=["genai"])
