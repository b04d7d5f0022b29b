"""Configs, pipelines and chunks: JSON documents shipped in `data/` plus those in `KILN_ARTED_CONFIG_DIR`.

Layout of both roots: `interception/*.json` and `output/*.json` (configs, id = file stem),
`pipelines/*.json`, `chunks/*.json`. Every document is validated when the registry is built and
every reference (config → pipeline, output config → output chunk, interception config → its
output configs) is resolved; a document that fails is reported by name in `registry.errors` and
skipped, never a crash. An operator document with the id of a shipped one replaces it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

log = logging.getLogger(__name__)

DATA = Path(__file__).parents[1] / "data"  # the surface's shipped documents
ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
MAX_DOC_BYTES = 1_000_000
MediaType = Literal["image", "audio", "video", "music", "text"]
Text = str | dict[str, str]


def both(text: Text | None) -> dict[str, str]:
    """A text as `{en, de}` (each falling back to the other), as the frontend indexes it by language."""
    return {lang: pick(text, lang) for lang in ("en", "de")}


def pick(text: Text | None, lang: str = "en") -> str:
    """One language of a `{en, de}` text (falling back to the other), or the string itself."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    return text.get(lang) or text.get("en") or text.get("de") or next(iter(text.values()), "")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class MediaPreferences(_Doc):
    default_output: MediaType = "image"
    supported_types: list[MediaType] = Field(default_factory=list)
    output_configs: list[str] = Field(default_factory=list)


class Pipeline(_Doc):
    name: str
    description: Text = ""
    chunks: list[str] = Field(default_factory=list)
    pipeline_type: str | None = None
    pipeline_stage: str | None = None
    requires_interception_prompt: bool = False
    input_requirements: dict[str, int] = Field(default_factory=lambda: {"texts": 1})


class Chunk(_Doc):
    name: str
    type: Literal["processing_chunk", "output_chunk"] = "processing_chunk"
    template: str = ""
    media_type: MediaType | None = None
    workflow: dict[str, dict[str, Any]] = Field(default_factory=dict)
    input_mappings: dict[str, dict[str, Any]] = Field(default_factory=dict)
    output_mapping: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("workflow")
    @classmethod
    def _graph(cls, graph: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for node_id, node in graph.items():
            if not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs"), dict):
                raise ValueError(f"workflow node {node_id} needs class_type and inputs")
        return graph


class Config(_Doc):
    id: str = ""
    kind: Literal["interception", "output"] = "interception"
    pipeline: str
    name: Text = ""
    description: Text = ""
    category: Text = ""
    context: Text = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    media_preferences: MediaPreferences = Field(default_factory=MediaPreferences)
    meta: dict[str, Any] = Field(default_factory=dict)
    display: dict[str, Any] | None = None
    tags: dict[str, list[str]] | None = None
    audience: dict[str, Any] | None = None
    properties: list[str] = Field(default_factory=list, max_length=16)  # selection-screen categories
    source: str = "kiln"  # kiln | operator

    @field_validator("properties")
    @classmethod
    def _properties(cls, values: list[str]) -> list[str]:
        for value in values:
            if not ID.match(value) or len(value) > 32:
                raise ValueError(f"property {value[:40]!r} must be a lower-case id of up to 32 characters")
        return values

    @property
    def media_type(self) -> str:
        return str(self.meta.get("media_type") or self.media_preferences.default_output)

    @property
    def model(self) -> str | None:
        value = self.meta.get("model")
        return str(value) if value else None


@dataclass
class Registry:
    configs: dict[str, Config] = field(default_factory=dict)
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    chunks: dict[str, Chunk] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def interception(self) -> list[Config]:
        return sorted((c for c in self.configs.values() if c.kind == "interception"), key=lambda c: c.id)

    def outputs(self) -> list[Config]:
        return sorted((c for c in self.configs.values() if c.kind == "output"), key=lambda c: c.id)

    def default_output(self, media_type: str) -> Config | None:
        """The output config marked `meta.default_for` this media type, else the first of that type."""
        candidates = [c for c in self.outputs() if c.media_type == media_type]
        marked = [c for c in candidates if c.meta.get("default_for") == media_type]
        return (marked or candidates or [None])[0]

    def output_chunk(self, config: Config) -> Chunk:
        return self.chunks[str(config.parameters["OUTPUT_CHUNK"])]


def _read(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_DOC_BYTES:
        raise ValueError(f"larger than {MAX_DOC_BYTES} bytes")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _load_docs(root: Path, folder: str) -> list[tuple[str, Path]]:
    base = root / folder
    if not base.is_dir():
        return []
    return [(p.stem, p) for p in sorted(base.glob("*.json")) if p.is_file() and not p.is_symlink()]


def _fail(reg: Registry, name: str, error: str) -> None:
    reg.errors.append({"name": name, "error": error[:300]})
    log.warning("arted: skipped %s: %s", name, error[:300])


def build(extra_dir: Path | None = None) -> Registry:
    reg = Registry()
    roots = [(DATA, "kiln")] + ([(Path(extra_dir), "operator")] if extra_dir else [])
    if extra_dir and not Path(extra_dir).is_dir():
        _fail(reg, str(extra_dir), "KILN_ARTED_CONFIG_DIR is not a directory")
    for root, source in roots:
        for folder, target, model in (("pipelines", reg.pipelines, Pipeline), ("chunks", reg.chunks, Chunk)):
            for stem, path in _load_docs(root, folder):
                try:
                    doc = model.model_validate({"name": stem, **_read(path)})
                    target[doc.name] = doc  # type: ignore[index]
                except (OSError, ValueError, ValidationError) as exc:
                    _fail(reg, f"{folder}/{path.name}", _message(exc))
        for kind in ("interception", "output"):
            for stem, path in _load_docs(root, kind):
                name = f"{kind}/{path.name}"
                if not ID.match(stem):
                    _fail(reg, name, "file name must be a lower-case id (a-z, 0-9, _ and -, up to 64)")
                    continue
                try:
                    reg.configs[stem] = Config.model_validate(
                        {**_read(path), "id": stem, "kind": kind, "source": source}
                    )
                except (OSError, ValueError, ValidationError) as exc:
                    _fail(reg, name, _message(exc))
    _check_references(reg)
    return reg


def _check_references(reg: Registry) -> None:
    for config in list(reg.outputs()):
        problem = _output_problem(reg, config)
        if problem:
            _fail(reg, f"output/{config.id}.json", problem)
            del reg.configs[config.id]
    for config in list(reg.interception()):
        problem = None
        if config.pipeline not in reg.pipelines:
            problem = f"pipeline {config.pipeline!r} does not exist"
        missing = [o for o in config.media_preferences.output_configs if o not in reg.configs]
        if missing:
            problem = f"output configs {missing} do not exist"
        if problem:
            _fail(reg, f"interception/{config.id}.json", problem)
            del reg.configs[config.id]


def _output_problem(reg: Registry, config: Config) -> str | None:
    if config.pipeline not in reg.pipelines:
        return f"pipeline {config.pipeline!r} does not exist"
    chunk_name = config.parameters.get("OUTPUT_CHUNK")
    chunk = reg.chunks.get(str(chunk_name))
    if chunk is None or chunk.type != "output_chunk":
        return f"OUTPUT_CHUNK {chunk_name!r} is not an output chunk"
    for param, mapping in chunk.input_mappings.items():
        node = chunk.workflow.get(str(mapping.get("node_id")))
        if node is None or not isinstance(mapping.get("field"), str):
            return f"chunk {chunk.name}: mapping {param!r} names no node of the workflow"
    if not chunk.media_type:
        return f"chunk {chunk.name}: media_type is required"
    return None


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc) or type(exc).__name__


@lru_cache(maxsize=8)
def registry(extra_dir: Path | None = None) -> Registry:
    """The registry of the shipped documents plus `extra_dir`, built once per directory."""
    return build(extra_dir)
