"""KB metadata schemas: declared properties and typed metadata, built-in schema profiles."""

from __future__ import annotations

import re
import uuid
from typing import Any

from kiln.apps.genai.errors import GenaiError

DATA_TYPES = ("text", "number", "int", "boolean")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
RESERVED = frozenset(
    {
        "knowledge_base_id",
        "document_id",
        "chunk_index",
        "title",
        "source_type",
        "source_name",
        "uri",
        "source_id",
        "source_path",
        "managed_by_source",
        "page_number",
        "text",
        "id",
    }
)
MAX_PROPERTIES = 64
MAX_METADATA_KEYS = 64
MAX_VALUE_CHARS = 2000
VECTOR_FAMILIES = ("embedded_vector", "pgvector_local", "qdrant_local", "weaviate_local")
PROFILE_NS = uuid.UUID("6f1c5d7e-3b0a-4c59-9e21-8d4b2f0a7c11")

_PROFILES = {
    "plain-document-rag": (
        "Plain document RAG",
        "Documents with a category and a language.",
        [("category", "text"), ("language", "text"), ("year", "int")],
    ),
    "agent-semantic-memory": (
        "Agent semantic memory",
        "Facts an agent keeps, with a topic and a confidence.",
        [("topic", "text"), ("confidence", "number"), ("agent_id", "text")],
    ),
    "agent-episodic-memory": (
        "Agent episodic memory",
        "Episodes an agent lived, by session and turn.",
        [("session_id", "text"), ("turn", "int"), ("agent_id", "text"), ("successful", "boolean")],
    ),
}


def system_profiles(provider_key: str | None = None) -> list[dict[str, Any]]:
    out = []
    for family in VECTOR_FAMILIES:
        if provider_key and family != provider_key:
            continue
        for slug, (name, description, props) in _PROFILES.items():
            out.append(
                {
                    "id": str(uuid.uuid5(PROFILE_NS, f"{family}:{slug}")),
                    "slug": slug,
                    "display_name": name,
                    "description": description,
                    "provider_key": family,
                    "is_system": True,
                    "schema": {"properties": [{"name": n, "data_type": t} for n, t in props]},
                }
            )
    return out


def check_schema(schema: Any) -> dict[str, Any]:
    if schema in (None, {}):
        return {"properties": []}
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, list) or len(props) > MAX_PROPERTIES:
        raise GenaiError(400, "invalid_schema", f"schema.properties must be a list of at most {MAX_PROPERTIES}")
    out, names = [], set()
    for prop in props:
        name = prop.get("name") if isinstance(prop, dict) else None
        data_type = prop.get("data_type", "text") if isinstance(prop, dict) else None
        if not isinstance(name, str) or not NAME_RE.match(name) or name in RESERVED or name in names:
            raise GenaiError(400, "invalid_schema", f"Invalid or duplicate property name {str(name)[:64]!r}")
        if data_type not in DATA_TYPES:
            raise GenaiError(400, "invalid_schema", f"data_type must be one of {', '.join(DATA_TYPES)}")
        names.add(name)
        out.append({"name": name, "data_type": data_type})
    return {"properties": out}


def _coerce(name: str, data_type: str, value: Any) -> Any:
    try:
        if data_type == "text":
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            value = str(value)
            if len(value) > MAX_VALUE_CHARS:
                raise ValueError
            return value
        if data_type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if data_type == "number":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError
    except (TypeError, ValueError):
        raise GenaiError(
            400, "invalid_metadata", f"Metadata {name!r} must be of type {data_type}", {"field": name}
        ) from None


def normalize_metadata(schema: dict[str, Any], metadata: Any, *, field: str = "metadata") -> dict[str, Any]:
    """Metadata restricted to the schema's declared keys, each coerced to its declared type."""
    if metadata in (None, {}):
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise GenaiError(400, "invalid_metadata", f"{field} must be an object of at most {MAX_METADATA_KEYS} keys")
    declared = {prop["name"]: prop["data_type"] for prop in (schema or {}).get("properties", [])}
    out = {}
    for key, value in metadata.items():
        if key not in declared:
            raise GenaiError(
                400,
                "invalid_metadata",
                f"Metadata key {str(key)[:64]!r} is not declared in the schema",
                {"field": str(key)[:64]},
            )
        if value is not None:
            out[key] = _coerce(key, declared[key], value)
    return out
