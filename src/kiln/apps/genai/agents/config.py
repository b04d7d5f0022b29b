"""Knobs of agent executions (`KILN_AGENT_*`) and the MCP server tools reach (`KILN_MCP_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KILN_", env_file=".env", extra="ignore")

    agent_max_rounds: int = Field(default=3, ge=1, le=20, description="Model calls with tool use per execution.")
    agent_max_tool_calls: int = Field(default=8, ge=0, le=100, description="Tool calls per execution.")
    agent_timeout_seconds: float = Field(default=120.0, gt=0, le=3600, description="Total time of one execution.")
    agent_sync_wait_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long POST /v1/agent-executions waits for the result before answering 202 (running).",
    )
    mcp_url: str | None = Field(
        default=None,
        description="MCP server (Streamable HTTP) serving `web_search`; unset: tool.web_search is unavailable.",
    )
    mcp_timeout_seconds: float = Field(default=20.0, gt=0, description="Timeout of one MCP call.")
