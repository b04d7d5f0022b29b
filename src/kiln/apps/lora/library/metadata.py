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

import errno
import functools
import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from typing import Any

MAX_SIDECAR_BYTES = 4 * 1024 * 1024
PREVIEW_SUFFIXES = (".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg", ".webp")
SIDECAR_SUFFIXES = (".json", ".civitai.info", ".metadata.json", *PREVIEW_SUFFIXES)
KEPT_HEADER_KEYS = (
    "ss_output_name",
    "ss_base_model_version",
    "ss_v2",
    "ss_sd_model_name",
    "ss_network_module",
    "ss_network_dim",
    "ss_network_alpha",
    "ss_resolution",
    "ss_num_train_images",
    "ss_epoch",
    "ss_steps",
    "ss_learning_rate",
    "ss_clip_skip",
    "ss_training_comment",
    "sshs_model_hash",
    "sshs_legacy_hash",
    "modelspec.architecture",
    "modelspec.title",
    "modelspec.trigger_phrase",
    "modelspec.description",
    "modelspec.hash_sha256",
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
    mtime_ns: int = 0


# One read brings the length, the header of a typical LoRA (50-300 KB) and often the whole
# file: one system call instead of a buffered 8-byte read followed by the header's read.
FIRST_READ = 512 * 1024


def _parse_header(read: Callable[[int], bytes], size: int, max_header: int) -> tuple[dict[str, Any], bytes]:
    """The JSON header and the bytes `read` gave so far (8-byte length, header, maybe some data)."""
    first = read(min(FIRST_READ, size))
    if len(first) < 8:
        raise InvalidAdapterFile("not a safetensors file: header too small")
    (length,) = struct.unpack_from("<Q", first)
    if length < 2 or length > max_header or 8 + length > size:
        raise InvalidAdapterFile("not a safetensors file: header length out of range")
    while len(first) < 8 + length:
        more = read(8 + length - len(first))
        if not more:
            raise InvalidAdapterFile("not a safetensors file: header cut short")
        first += more
    try:
        header = json.loads(first[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidAdapterFile("not a safetensors file: header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidAdapterFile("not a safetensors file: header is not an object")
    _check_entries(header, size - 8 - length)
    return header, first


def _check_entries(header: dict[str, Any], data_size: int) -> None:
    """Every tensor entry's data_offsets lie inside the data. A tight loop: an SDXL LoRA has
    2,000+ entries; the generator per entry this replaced cost a quarter of the JSON parse."""
    for name, info in header.items():
        try:
            begin, end = info["data_offsets"]
            if type(begin) is int and type(end) is int and 0 <= begin <= end <= data_size:
                continue
        except (TypeError, KeyError, ValueError):
            if name == "__metadata__":
                continue
        raise InvalidAdapterFile(f"not a safetensors file: bad entry for tensor {name[:64]!r}")


def _open_regular_fd(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """A read-only descriptor and its stat; OSError unless a regular file (a FIFO named
    `x.safetensors` would otherwise block the reader forever)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        stat = os.fstat(fd)
        if not S_ISREG(stat.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return fd, stat
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: str | os.PathLike[str]) -> tuple[Any, os.stat_result]:
    """An unbuffered binary handle and its stat (see `_open_regular_fd`)."""
    fd, stat = _open_regular_fd(path)
    return os.fdopen(fd, "rb", buffering=0), stat


def read_header(path: str | os.PathLike[str], max_header: int = 16 * 1024 * 1024) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the file size; raises InvalidAdapterFile."""
    try:
        fd, stat = _open_regular_fd(path)
        try:
            size = stat.st_size
            header, _ = _parse_header(functools.partial(os.read, fd), size, max_header)
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidAdapterFile(f"file not readable: {exc.strerror or 'error'}") from None
    return header, size


def hash_rest(fh: Any, hasher: Any, stop: Any = None) -> None:
    """Feed the rest of an open file to `hasher` in 1 MiB blocks (hashlib drops the GIL on
    them, so several files hash in parallel threads); `stop()` true between blocks aborts."""
    while block := fh.read(1024 * 1024):
        hasher.update(block)
        if stop is not None and stop():
            raise InterruptedError("hashing stopped")


def read_facts(path: str | os.PathLike[str], *, max_header: int = 16 * 1024 * 1024, sha256: bool = True) -> FileFacts:
    """Header facts; with `sha256`, the whole-file hash from the same open (the bytes already
    read feed the hash, then the rest of the file streams through it). The header is read with
    `os.read` on the descriptor: a file object per file (its own fstat, its close) cost a scan
    of small files more than the read itself."""
    try:
        fd, stat = _open_regular_fd(path)
        try:
            header, head = _parse_header(functools.partial(os.read, fd), stat.st_size, max_header)
            digest = None
            if sha256:
                hasher = hashlib.sha256(head)
                with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
                    hash_rest(fh, hasher)
                digest = hasher.hexdigest()
        finally:
            os.close(fd)
    except OSError as exc:
        raise InvalidAdapterFile(f"file not readable: {exc.strerror or 'error'}") from None
    raw_meta = header.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
    name = os.fspath(path)
    base = os.path.basename(name)
    return FileFacts(
        path=name,
        stem=base[: -len(".safetensors")] if base.lower().endswith(".safetensors") else os.path.splitext(base)[0],
        size=stat.st_size,
        mtime=stat.st_mtime,
        metadata=metadata,
        tensor_count=len(header) - ("__metadata__" in header),
        sha256=digest,
        mtime_ns=stat.st_mtime_ns,
    )


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


def adapter_fields(facts: FileFacts, siblings: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Adapter columns derived from the header and the sidecars (the caller's values win).

    `siblings` (the names in the file's folder, when the caller listed it) saves a stat per
    possible sidecar. String operations, not pathlib: this runs once per file of a scan."""
    meta = facts.metadata
    file_name = os.path.basename(facts.path)
    kept = {k: meta[k] for k in KEPT_HEADER_KEYS if k in meta}
    fields: dict[str, Any] = {
        "file_stem": facts.stem,
        "alias": (meta.get("ss_output_name") or "").strip() or None,
        "primary_file_name": file_name,
        "primary_file_size_kb": round(facts.size / 1024),
        "primary_file_sha256": facts.sha256,
        "primary_file_local_path": facts.path,
        "file_size": facts.size,
        "file_mtime_ns": facts.mtime_ns,
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
    # The sidecars' stem: the name without its last suffix, as Path.with_suffix("") gives it.
    dot = file_name.rfind(".")
    stem = file_name[:dot] if dot > 0 else file_name
    if siblings is None or _candidates(siblings, stem):
        _apply_sidecars(Path(facts.path), fields)
    return fields


def _candidates(siblings: set[str] | frozenset[str], stem: str) -> list[str]:
    return [stem + suffix for suffix in SIDECAR_SUFFIXES if stem + suffix in siblings]


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
