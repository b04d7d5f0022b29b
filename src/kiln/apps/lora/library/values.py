"""Checked field values of an adapter (create and PATCH share them) and its JSON view."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from kiln.apps.lora.errors import LoraError
from kiln.apps.lora.models import Adapter
from kiln.core.db import iso_or_none as _iso

MAX_WEIGHT = 10.0
MAX_LIST = 200
MAX_ITEM = 255
MAX_TEXT = 100_000
MAX_SEARCH_TEXT = 2000

PATCHABLE = (
    "weight",
    "active",
    "ordinal",
    "tags",
    "description",
    "activation_text",
    "trained_words",
    "triggers",
    "archetype",
    "archetype_confidence",
    "visibility",
    "nsfw_level",
    "supports_generation",
    "sd_version",
)
# What an archive's metadata may set when it creates an adapter: the descriptive fields plus
# everything a PATCH may change (file paths come only from what the import extracted).
ARCHIVE_FIELDS = (
    "name",
    "version",
    "canonical_version_name",
    "author_username",
    "primary_file_download_url",
    "stats",
    "extra",
    *PATCHABLE,
    "published_at",
)


def _bad(key: str, what: str) -> LoraError:
    return LoraError(400, f"{key} must be {what}")


def check_number(key: str, value: Any, low: float, high: float, *, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, "a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise _bad(key, f"a finite number between {low:g} and {high:g}")
    return float(value)


def check_int(key: str, value: Any, low: int, high: int, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key, f"an integer between {low} and {high}" + (" or null" if nullable else ""))
    return value


def check_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(key, "true or false")
    return value


def check_text(key: str, value: Any, *, nullable: bool = True, limit: int = MAX_TEXT) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(key, f"a string of at most {limit} characters")
    return value


def unique_words(words: list[str]) -> list[str]:
    """`words` without the later repeats of a word, compared case-insensitively (tags)."""
    seen: set[str] = set()
    out = []
    for word in words:
        if word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word)
    return out


def check_words(key: str, value: Any) -> list[str]:
    """A list of short strings, trimmed, blanks dropped, de-duplicated case-insensitively."""
    if not isinstance(value, list) or len(value) > MAX_LIST:
        raise _bad(key, f"a list of at most {MAX_LIST} strings")
    if any(not isinstance(item, str) or len(item) > MAX_ITEM for item in value):
        raise _bad(key, f"a list of strings of at most {MAX_ITEM} characters")
    return unique_words([item.strip() for item in value if item.strip()])


def check_field(key: str, value: Any) -> Any:
    if key == "weight":
        return check_number(key, value, -MAX_WEIGHT, MAX_WEIGHT)
    if key == "archetype_confidence":
        return check_number(key, value, 0.0, 1.0, nullable=True)
    if key in ("active", "supports_generation"):
        return check_bool(key, value)
    if key == "ordinal":
        return check_int(key, value, -1_000_000, 1_000_000, nullable=True)
    if key == "nsfw_level":
        return check_int(key, value, 0, 1000)
    if key in ("tags", "trained_words", "triggers"):
        return check_words(key, value)
    if key == "visibility":
        return check_text(key, value, nullable=False, limit=32)
    if key in ("sd_version",):
        return check_text(key, value, limit=64)
    if key in ("archetype",):
        return check_text(key, value, limit=MAX_ITEM)
    return check_text(key, value)


def check_patch(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise LoraError(400, "Request body must be a JSON object")
    unknown = sorted(k for k in body if k not in PATCHABLE)
    if unknown:
        raise LoraError(400, f"Unsupported fields: {', '.join(unknown[:10])}; allowed: {', '.join(PATCHABLE)}")
    if not body:
        raise LoraError(400, "No valid fields provided for update")
    return {key: check_field(key, value) for key, value in body.items()}


def search_text(adapter: Adapter) -> str:
    """What a search matches (every term a substring of it); see `search_text_of`."""
    return search_text_of(
        adapter.name,
        adapter.alias,
        adapter.file_stem,
        adapter.primary_file_name,
        adapter.version,
        adapter.tags,
        adapter.trained_words,
        adapter.triggers,
    )


def row_search_text(row: Mapping[str, Any]) -> str:
    """`search_text` of a plain row (bulk inserts and updates build no Adapter objects)."""
    return search_text_of(
        row.get("name"),
        row.get("alias"),
        row.get("file_stem"),
        row.get("primary_file_name"),
        row.get("version"),
        row.get("tags"),
        row.get("trained_words"),
        row.get("triggers"),
    )


def search_text_of(
    name: str | None,
    alias: str | None,
    file_stem: str | None,
    file_name: str | None,
    version: str | None,
    tags: list[str] | None,
    trained_words: list[str] | None,
    triggers: list[str] | None,
) -> str:
    """A part contained in another part is left out: terms hold no whitespace, so it matches
    nothing more, and every trigram it would add to the index costs at import (name = alias =
    file stem inside `<stem>.safetensors` is the usual case: one part instead of four)."""
    parts = [name, alias, file_stem, file_name, version, *(tags or []), *(trained_words or []), *(triggers or [])]
    unique = list(dict.fromkeys(" ".join(p.split()).casefold() for p in parts if p and p.strip()))
    joined = "\n".join(unique)
    # Without newlines in a part, a second occurrence can only be inside another part.
    return "\n".join(p for p in unique if joined.count(p) == 1)[:MAX_SEARCH_TEXT]


def adapter_view(a: Adapter) -> dict[str, Any]:
    return {
        "id": a.id,
        "name": a.name,
        "version": a.version,
        "canonical_version_name": a.canonical_version_name,
        "description": a.description,
        "author_username": a.author_username,
        "visibility": a.visibility,
        "published_at": _iso(a.published_at),
        "tags": list(a.tags or []),
        "trained_words": list(a.trained_words or []),
        "triggers": list(a.triggers or []),
        "activation_text": a.activation_text,
        "archetype": a.archetype,
        "archetype_confidence": a.archetype_confidence,
        "sd_version": a.sd_version,
        "nsfw_level": a.nsfw_level,
        "supports_generation": a.supports_generation,
        "stats": dict(a.stats or {}),
        "extra": dict(a.extra or {}),
        "file_path": a.file_path,
        "file_stem": a.file_stem,
        "alias": a.alias,
        "primary_file_name": a.primary_file_name,
        "primary_file_size_kb": a.primary_file_size_kb,
        "primary_file_sha256": a.primary_file_sha256,
        "primary_file_download_url": a.primary_file_download_url,
        "primary_file_local_path": a.primary_file_local_path,
        "base_model": a.base_model,
        "network_module": a.network_module,
        "network_dim": a.network_dim,
        "network_alpha": a.network_alpha,
        "model_hash": a.model_hash,
        "trigger_candidates": list(a.trigger_candidates or []),
        "header_metadata": dict(a.header_metadata or {}),
        "weight": a.weight,
        "active": a.active,
        "ordinal": a.ordinal,
        "json_file_path": a.json_file_path,
        "json_file_mtime": a.json_file_mtime,
        "json_file_size": a.json_file_size,
        "last_ingested_at": _iso(a.last_ingested_at),
        "created_at": _iso(a.created_at),
        "updated_at": _iso(a.updated_at),
    }
