"""Request bodies of the arted routes (unknown keys are ignored, as the reference's frontend sends extras)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 128
MAX_CONTEXT = 8000


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Stage2Request(_Body):
    schema_: str = Field(alias="schema", min_length=1, max_length=MAX_ID)
    input_text: str = Field(max_length=100_000)
    safety_level: str = Field(default="kids", max_length=32)
    execution_mode: str = Field(default="eco", max_length=32)
    output_config: str | None = Field(default=None, max_length=MAX_ID)
    context_prompt: str | None = Field(default=None, max_length=MAX_CONTEXT)
    user_language: str = Field(default="de", max_length=8)


class ExecuteRequest(Stage2Request):
    context_language: str | None = Field(default=None, max_length=8)
    interception_result: str | None = Field(default=None, max_length=100_000)
    seed: Any = None
    user_id: str | None = Field(default=None, max_length=MAX_ID)
    session_id: str | None = Field(default=None, max_length=MAX_ID)


class Stage34Request(_Body):
    stage2_result: str = Field(max_length=100_000)
    output_config: str = Field(min_length=1, max_length=MAX_ID)
    safety_level: str = Field(default="kids", max_length=32)
    execution_mode: str = Field(default="eco", max_length=32)
    run_id: str | None = Field(default=None, max_length=64)
    seed: Any = None
    schema_: str | None = Field(default=None, alias="schema", max_length=MAX_ID)
    user_id: str | None = Field(default=None, max_length=MAX_ID)
    session_id: str | None = Field(default=None, max_length=MAX_ID)
