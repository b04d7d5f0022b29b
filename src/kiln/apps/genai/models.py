"""Every genai table, imported so the metadata (and Alembic) sees them. Tables are prefixed `genai_`."""

from __future__ import annotations
