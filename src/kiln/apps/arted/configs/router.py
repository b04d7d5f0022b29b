"""Config routes of the contract (`/api/schema/list`, `/api/schema/<id>`) and the frontend's companions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kiln.apps.arted.configs.registry import Config, Registry, both, pick
from kiln.apps.arted.deps import RegistryDep
from kiln.apps.arted.errors import ArtedError, ArtedRoute
from kiln.apps.arted.pipeline import service

router = APIRouter(route_class=ArtedRoute)


def _summary(config: Config) -> dict[str, Any]:
    return {
        "id": config.id,
        "name": pick(config.name),
        "description": pick(config.description),
        "pipeline": config.pipeline,
        "kind": config.kind,
        "media_preferences": config.media_preferences.model_dump(),
    }


def _detail(reg: Registry, config: Config) -> dict[str, Any]:
    doc = config.model_dump(exclude={"kind", "source"})
    pipeline = reg.pipelines[config.pipeline]
    doc.update(kind=config.kind, source=config.source, chunks=pipeline.chunks)
    return doc


@router.get("/api/schema/list")
async def schema_list(reg: RegistryDep) -> dict[str, Any]:
    return {"schemas": [_summary(c) for c in reg.interception() + reg.outputs()]}


@router.get("/api/schema/info")
async def schema_info(reg: RegistryDep) -> dict[str, Any]:
    return {
        "status": "success",
        "schemas_available": len(reg.configs),
        "schemas": sorted(reg.configs),
        "engine_status": "ready",
        "config_errors": reg.errors,
    }


@router.get("/api/schema/schemas")
async def schema_schemas(reg: RegistryDep) -> dict[str, Any]:
    out = []
    for config in reg.interception() + reg.outputs():
        pipeline = reg.pipelines[config.pipeline]
        out.append(
            {
                "name": config.id,
                "display_name": pick(config.name),
                "description": pick(config.description),
                "pipeline_name": config.pipeline,
                "chunks": pipeline.chunks,
                "parameters": config.parameters,
                "meta": config.meta,
            }
        )
    return {"status": "success", "schemas": out}


@router.get("/api/schema/{name}")
async def schema_detail(name: str, reg: RegistryDep) -> dict[str, Any]:
    return _detail(reg, service.get_config(reg, name))


@router.get("/pipeline_configs_metadata")
async def configs_metadata(reg: RegistryDep) -> dict[str, Any]:
    configs = []
    for c in reg.interception():
        entry: dict[str, Any] = {
            "id": c.id,
            "name": c.name,
            "description": c.description,
            "category": c.category,
            "pipeline": c.pipeline,
            "media_preferences": c.media_preferences.model_dump(),
            "meta": c.meta,
        }
        for key in ("display", "tags", "audience"):
            if getattr(c, key) is not None:
                entry[key] = getattr(c, key)
        configs.append(entry)
    return {"configs": configs}


def short_description(text: str, limit: int = 220) -> str:
    """The tile text: the whole description if it fits, else its first one or two sentences, else cut at a word."""
    if len(text) <= limit:
        return text
    sentences = [s for s in text.replace(".\n", ". ").split(". ") if s]
    first = sentences[0].rstrip(".") + "."
    if len(sentences) > 1 and len(first) <= limit:
        two = f"{first} {sentences[1].rstrip('.')}."
        return two if len(two) <= limit else first
    return text[:limit].rsplit(" ", 1)[0].strip() + "..."


def _with_properties(c: Config) -> dict[str, Any]:
    description = both(c.description)
    entry: dict[str, Any] = {
        "id": c.id,
        "name": both(c.name or c.id),
        "description": description,
        "short_description": {k: short_description(v) for k, v in description.items()},
        "category": both(c.category),
        "pipeline": c.pipeline,
        "properties": c.properties,
        "media_preferences": c.media_preferences.model_dump(),
        "owner": "system",
    }
    display = c.display or {}
    entry.update(
        icon=display.get("icon", "🎨"),
        color=display.get("color", "#888888"),
        difficulty=display.get("difficulty", 3),
        phase1_description=display.get("phase1_description", c.description),
    )
    for key in ("tags", "audience"):
        if getattr(c, key) is not None:
            entry[key] = getattr(c, key)
    return entry


@router.get("/pipeline_configs_with_properties")
async def configs_with_properties(reg: RegistryDep) -> dict[str, Any]:
    """The selection screen's list: interception configs that name `properties` (their categories)."""
    configs = [_with_properties(c) for c in reg.interception() if c.properties]
    return {"configs": configs, "property_pairs": [], "symbols_enabled": False}


@router.get("/api/config/{config_id}/context")
async def config_context(config_id: str, reg: RegistryDep) -> dict[str, Any]:
    config = service.get_config(reg, config_id)
    if not config.context:
        raise ArtedError(404, f"Config {config_id!r} has no context", config_id=config_id)
    return {"config_id": config.id, "context": config.context}


@router.get("/api/config/{config_id}/pipeline")
async def config_pipeline(config_id: str, reg: RegistryDep) -> dict[str, Any]:
    config = service.get_config(reg, config_id)
    p = reg.pipelines[config.pipeline]
    return {
        "config_id": config.id,
        "pipeline_name": p.name,
        "pipeline_type": p.pipeline_type,
        "pipeline_stage": p.pipeline_stage,
        "requires_interception_prompt": p.requires_interception_prompt,
        "input_requirements": p.input_requirements,
        "description": pick(p.description),
    }
