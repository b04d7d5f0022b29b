"""What an adapter file says about itself, read from the safetensors header alone.

A `.safetensors` file starts with an 8-byte little-endian header length N and N bytes of
JSON; the tensors follow and are never read here (only the whole-file sha256 streams the
bytes, in chunks). Kohya's `__metadata__` keys give the alias (`ss_output_name`), the base
model, rank/alpha, the network module, trigger-word candidates (`ss_tag_frequency`) and the
tensor hash (`sshs_model_hash`); `modelspec.*` gives title, architecture and trigger phrase.
Sidecars next to the file (`<stem>.json` A1111 user metadata, `<stem>.civitai.info`,
`<stem>.metadata.json`, preview images) are read too. Blocking: call from a thread.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SIDECAR_BYTES = 4 * 1024 * 1024
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg", ".webp")
KEPT_HEADER_KEYS = (
    "ss_output_name", "ss_base_model_version", "ss_v2", "ss_sd_model_name", "ss_network_module", "ss_network_dim",
    "ss_network_alpha", "ss_resolution", "ss_num_train_images", "ss_epoch", "ss_steps", "ss_learning_rate",
    "ss_clip_skip", "ss_training_comment", "sshs_model_hash", "sshs_legacy_hash", "modelspec.architecture",
    "modelspec.title", "modelspec.trigger_phrase", "modelspec.description", "modelspec.hash_sha256",
    "modelspec.sai_model_spec",
)


class InvalidAdapterFile(ValueError):
    """The file is not a readable safetensors file."""


@dataclass
class FileFacts:
    path: str
    stem: str
    size: int
    mtime: float
    metadata: dict[str, str] = field(default_factory=dict)
    tensor_count: int = 0
    sha256: str | None = None


def _parse_header(fh: Any, size: int, max_header: int) -> tuple[dict[str, Any], bytes]:
    head = fh.read(8)
    if len(head) < 8:
        raise InvalidAdapterFile("not a safetensors file: header too small")
    (length,) = struct.unpack("<Q", head)
    if length < 2 or length > max_header or 8 + length > size:
        raise InvalidAdapterFile("not a safetensors file: header length out of range")
    raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidAdapterFile("not a safetensors file: header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidAdapterFile("not a safetensors file: header is not an object")
    data_size = size - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise InvalidAdapterFile(f"not a safetensors file: bad entry for tensor {name[:64]!r}")
    return header, head + raw


def read_header(path: str | os.PathLike[str], max_header: int = 16 * 1024 * 1024) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the file size; raises InvalidAdapterFile."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header, _ = _parse_header(fh, size, max_header)
    except OSError as exc:
        raise InvalidAdapterFile(f"file not readable: {exc.strerror or 'error'}") from None
    return header, size


def read_facts(path: str | os.PathLike[str], *, max_header: int = 16 * 1024 * 1024, sha256: bool = True) -> FileFacts:
    """Header facts; with `sha256`, the whole-file hash from the same open (the header bytes
    feed the hash, then the rest of the file streams through it)."""
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            header, head = _parse_header(fh, stat.st_size, max_header)
            digest = None
            if sha256:
                hasher = hashlib.sha256(head)
                while block := fh.read(1024 * 1024):
                    hasher.update(block)
                digest = hasher.hexdigest()
    except OSError as exc:
        raise InvalidAdapterFile(f"file not readable: {exc.strerror or 'error'}") from None
    raw_meta = header.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
    name = os.fspath(path)
    base = os.path.basename(name)
    return FileFacts(path=name, stem=base[: -len(".safetensors")] if base.lower().endswith(".safetensors")
                     else os.path.splitext(base)[0], size=stat.st_size, mtime=stat.st_mtime, metadata=metadata,
                     tensor_count=sum(1 for k in header if k != "__metadata__"), sha256=digest)


def base_model_of(meta: dict[str, str]) -> str | None:
    """SD1/SD2/SDXL/SD3/Flux from `ss_base_model_version`, `ss_v2` or `modelspec.architecture`."""
    raw = (meta.get("ss_base_model_version") or "").lower()
    arch = (meta.get("modelspec.architecture") or "").lower()
    for probe in (raw, arch):
        if not probe:
            continue
        if "flux" in probe:
            return "Flux"
        if "sdxl" in probe or "stable-diffusion-xl" in probe:
            return "SDXL"
        if "sd3" in probe or "stable-diffusion-v3" in probe:
            return "SD3"
        if "sd_v2" in probe or "stable-diffusion-v2" in probe:
            return "SD2"
        if "sd_v1" in probe or "stable-diffusion-v1" in probe:
            return "SD1.5"
    if meta.get("ss_v2", "").lower() == "true":
        return "SD2"
    return None


def trigger_candidates(meta: dict[str, str], limit: int = 10) -> list[str]:
    """Most frequent caption tags summed over datasets (malformed JSON gives none)."""
    try:
        freq = json.loads(meta.get("ss_tag_frequency") or "{}")
    except json.JSONDecodeError:
        return []
    totals: dict[str, int] = {}
    if isinstance(freq, dict):
        for tags in freq.values():
            if not isinstance(tags, dict):
                continue
            for tag, count in tags.items():
                tag = str(tag).strip()
                if tag and isinstance(count, int | float):
                    totals[tag] = totals.get(tag, 0) + int(count)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [tag for tag, _ in ranked[:limit]]


def _number(value: str | None, kind: type) -> Any:
    if value is None:
        return None
    try:
        number = kind(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_SIDECAR_BYTES:
            return None
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()][:100]


def adapter_fields(facts: FileFacts, siblings: set[str] | None = None) -> dict[str, Any]:
    """Adapter columns derived from the header and the sidecars (the caller's values win).

    `siblings` (the names in the file's folder, when the caller listed it) saves a stat per
    possible sidecar."""
    meta = facts.metadata
    path = Path(facts.path)
    kept = {k: meta[k] for k in KEPT_HEADER_KEYS if k in meta}
    fields: dict[str, Any] = {
        "file_stem": facts.stem,
        "alias": (meta.get("ss_output_name") or "").strip() or None,
        "primary_file_name": path.name,
        "primary_file_size_kb": round(facts.size / 1024),
        "primary_file_sha256": facts.sha256,
        "primary_file_local_path": facts.path,
        "base_model": meta.get("ss_base_model_version") or meta.get("modelspec.architecture"),
        "sd_version": base_model_of(meta),
        "network_module": meta.get("ss_network_module"),
        "network_dim": _number(meta.get("ss_network_dim"), int),
        "network_alpha": _number(meta.get("ss_network_alpha"), float),
        "model_hash": (meta.get("sshs_model_hash") or "")[:64] or None,
        "trigger_candidates": trigger_candidates(meta),
        "header_metadata": kept,
        "description": meta.get("modelspec.description") or None,
        "trained_words": _str_list(meta.get("modelspec.trigger_phrase") or []),
        "title": (meta.get("modelspec.title") or "").strip() or None,
    }
    stem = path.with_suffix("").name
    if siblings is None or _candidates(siblings, stem):
        _apply_sidecars(path, fields)
    return fields


def _candidates(siblings: set[str], stem: str) -> list[str]:
    return [stem + suffix for suffix in (".json", ".civitai.info", ".metadata.json", *PREVIEW_SUFFIXES)
            if stem + suffix in siblings]


def _apply_sidecars(path: Path, fields: dict[str, Any]) -> None:
    stem = path.with_suffix("")
    user = _read_json(stem.with_name(stem.name + ".json"))
    if user is not None:
        fields["json_file_path"] = str(stem.with_name(stem.name + ".json"))
        if isinstance(user.get("activation text"), str) and user["activation text"].strip():
            fields["activation_text"] = user["activation text"].strip()
        if isinstance(user.get("description"), str) and user["description"].strip():
            fields["description"] = user["description"].strip()
        if isinstance(user.get("sd version"), str) and user["sd version"].strip() not in ("", "Unknown"):
            fields["sd_version"] = user["sd version"].strip()
        weight = user.get("preferred weight")
        if isinstance(weight, int | float) and not isinstance(weight, bool) and weight and abs(weight) <= 10:
            fields["weight"] = float(weight)
        if isinstance(user.get("negative text"), str) and user["negative text"].strip():
            fields.setdefault("extra", {})["negative_text"] = user["negative text"].strip()
    civitai = _read_json(stem.with_name(stem.name + ".civitai.info"))
    if civitai is not None:
        words = _str_list(civitai.get("trainedWords"))
        if words:
            fields["trained_words"] = words
        model = civitai.get("model") if isinstance(civitai.get("model"), dict) else {}
        if isinstance(model.get("name"), str):
            fields["title"] = fields.get("title") or model["name"].strip() or None
        if model.get("tags"):
            fields["tags"] = _str_list(model.get("tags"))
        if isinstance(civitai.get("name"), str):
            fields["version"] = civitai["name"].strip()[:255] or None
        if isinstance(civitai.get("description"), str) and not fields.get("description"):
            fields["description"] = civitai["description"]
        if isinstance(civitai.get("baseModel"), str) and not fields.get("sd_version"):
            fields["sd_version"] = civitai["baseModel"].strip()[:64] or None
        if isinstance(model.get("nsfw"), bool):
            fields["nsfw_level"] = 1 if model["nsfw"] else 0
    lm = _read_json(stem.with_name(stem.name + ".metadata.json"))
    if lm is not None:
        if lm.get("tags") and not fields.get("tags"):
            fields["tags"] = _str_list(lm.get("tags"))
        if isinstance(lm.get("base_model"), str) and not fields.get("sd_version"):
            fields["sd_version"] = lm["base_model"].strip()[:64] or None
        civ = lm.get("civitai") if isinstance(lm.get("civitai"), dict) else {}
        if civ.get("trainedWords") and not fields.get("trained_words"):
            fields["trained_words"] = _str_list(civ.get("trainedWords"))
    for suffix in PREVIEW_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            fields["preview_path"] = str(candidate)
            break
