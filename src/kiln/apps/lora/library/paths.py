"""Where adapter files may live: inside `KILN_LORA_DIR` or one of `KILN_LORA_ROOTS`.

A client path is resolved (symlinks followed) and must land inside a root; a relative path is
taken relative to `KILN_LORA_DIR`. Empty files, non-`.safetensors` names and anything that
is not a regular file are refused, so `/etc/passwd` or `../../x` never become an adapter.
"""

from __future__ import annotations

from pathlib import Path

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.errors import LoraError


def resolve_in_roots(cfg: LoraSettings, raw: str) -> Path:
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw or len(raw) > 4096:
        raise LoraError(400, "file_path must be a non-empty path")
    roots = cfg.allowed_roots()
    candidate = Path(raw.strip()).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    try:
        resolved = candidate.resolve(strict=False)
    except (OSError, RuntimeError):
        raise LoraError(400, "file_path cannot be resolved") from None
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise LoraError(400, "file_path is outside the configured LoRA folders")
    return resolved


def adapter_file(cfg: LoraSettings, raw: str) -> Path:
    """A registrable adapter file, or a 400 saying why not."""
    path = resolve_in_roots(cfg, raw)
    if path.suffix.lower() != ".safetensors":
        raise LoraError(400, "file_path must name a .safetensors file")
    if not path.is_file():
        raise LoraError(400, "file_path does not exist or is not readable")
    if path.stat().st_size == 0:
        raise LoraError(400, "file_path is an empty file")
    return path


def folder(cfg: LoraSettings, raw: str | None) -> Path:
    path = cfg.allowed_roots()[0] if not raw else resolve_in_roots(cfg, raw)
    if not path.is_dir():
        raise LoraError(400, "directory does not exist")
    return path


def relative_to_roots(cfg: LoraSettings, path: Path) -> str:
    for root in cfg.allowed_roots():
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name
