"""Import of export archives, validated before anything is written.

Every member name is checked (no absolute path, drive, backslash, `..`, NUL; bounded count
and total uncompressed size); the manifest must be a JSON object whose adapter ids are plain
identifiers and whose metadata/file paths are members under `adapters/<id>/`. Primary files
are extracted to `KILN_LORA_DIR/imports/<id>/<name>` (names sanitised, sizes checked against
the manifest, CRC-32 checked, sha256 too when the manifest gives one, safetensors header
read) and the database work of one archive is one transaction. A non-ZIP upload is a per-file error.
Conflicts by (name, version): `skip` (default), `overwrite` or `rename`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kiln.apps.lora.config import LoraSettings
from kiln.apps.lora.library.metadata import InvalidAdapterFile, adapter_fields, read_facts

ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]")
MAX_MANIFEST = 16 * 1024 * 1024
MAX_METADATA = 4 * 1024 * 1024


class ArchiveError(ValueError):
    """The archive is refused; the message says why."""


@dataclass
class Planned:
    entry_id: str
    metadata: dict[str, Any]
    primary: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    extracted: dict[str, Any] = field(default_factory=dict)


def _check_member(name: str) -> None:
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"archive member has an unsafe path: {name[:100]!r}")
    parts = PurePosixPath(name).parts
    if any(p in ("..", "") for p in parts):
        raise ArchiveError(f"archive member has an unsafe path: {name[:100]!r}")


def _read_json(zf: zipfile.ZipFile, name: str, limit: int) -> Any:
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise ArchiveError(f"{name} is too large")
    try:
        return json.loads(zf.read(info).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArchiveError(f"{name} is not valid JSON") from None


def plan(zf: zipfile.ZipFile, cfg: LoraSettings) -> list[Planned]:
    infos = zf.infolist()
    if len(infos) > cfg.max_import_members:
        raise ArchiveError(f"archive has more than {cfg.max_import_members} members")
    if sum(i.file_size for i in infos) > cfg.max_import_bytes:
        raise ArchiveError("archive is larger than KILN_LORA_MAX_IMPORT_BYTES when extracted")
    names = set()
    for info in infos:
        _check_member(info.filename)
        names.add(info.filename)
    if "manifest.json" not in names:
        raise ArchiveError("manifest.json missing")
    manifest = _read_json(zf, "manifest.json", MAX_MANIFEST)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("adapters"), list):
        raise ArchiveError("manifest.json must be an object with an 'adapters' list")
    planned: list[Planned] = []
    for entry in manifest["adapters"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not ID.match(entry["id"]):
            raise ArchiveError("manifest adapter ids must be plain identifiers (letters, digits, - and _)")
        prefix = f"adapters/{entry['id']}/"
        meta_path = entry.get("metadata_path")
        if meta_path != prefix + "metadata.json" or meta_path not in names:
            raise ArchiveError(f"adapter {entry['id']}: metadata_path must be the member {prefix}metadata.json")
        metadata = _read_json(zf, meta_path, MAX_METADATA)
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"].strip():
            raise ArchiveError(f"adapter {entry['id']}: metadata needs a name")
        item = Planned(entry["id"], metadata)
        for f in entry.get("files") or []:
            path = f.get("archive_path") if isinstance(f, dict) else None
            if not isinstance(path, str) or not path.startswith(prefix + "files/") or path not in names:
                raise ArchiveError(f"adapter {entry['id']}: file entries must name members under {prefix}files/")
            if zf.getinfo(path).file_size != f.get("size", zf.getinfo(path).file_size):
                raise ArchiveError(f"adapter {entry['id']}: size of {path} differs from the manifest")
            item.files.append(f)
            if f.get("kind") == "primary" and item.primary is None:
                item.primary = path
        if item.primary is None:
            raise ArchiveError(f"adapter {entry['id']}: no primary file shipped in the archive")
        planned.append(item)
    return planned


def _safe_name(raw: Any, fallback: str) -> str:
    name = SAFE_NAME.sub("_", PurePosixPath(str(raw or "")).name).strip(" .")[:200]
    return name or fallback


def extract(zf: zipfile.ZipFile, cfg: LoraSettings, item: Planned) -> None:
    """Extract the primary (and sidecar JSON) of one planned adapter and read its header."""
    folder = (cfg.allowed_roots()[0] / "imports" / item.entry_id).resolve()
    if not folder.is_relative_to(cfg.allowed_roots()[0]):
        raise ArchiveError("import folder escapes KILN_LORA_DIR")
    folder.mkdir(parents=True, exist_ok=True)
    for f in item.files:
        if f.get("kind") not in ("primary", "metadata"):
            continue
        fallback = "adapter.safetensors" if f["kind"] == "primary" else "adapter.json"
        name = _safe_name(f.get("name"), fallback)
        if f["kind"] == "primary" and not name.lower().endswith(".safetensors"):
            raise ArchiveError(f"adapter {item.entry_id}: the primary file must be a .safetensors file")
        target = folder / name
        digest = hashlib.sha256()
        try:
            with zf.open(f["archive_path"]) as src, open(target, "wb") as dst:
                while block := src.read(1024 * 1024):
                    digest.update(block)
                    dst.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError):
            target.unlink(missing_ok=True)
            raise ArchiveError(f"adapter {item.entry_id}: {name} is corrupt in the archive") from None
        if f.get("sha256") and f["sha256"] != digest.hexdigest():
            target.unlink(missing_ok=True)
            raise ArchiveError(f"adapter {item.entry_id}: checksum of {name} differs from the manifest")
        if f["kind"] == "primary":
            try:
                facts = read_facts(target, max_header=cfg.max_header_bytes, sha256=False)
            except InvalidAdapterFile as exc:
                target.unlink(missing_ok=True)
                raise ArchiveError(f"adapter {item.entry_id}: {exc}") from None
            facts.sha256 = digest.hexdigest()
            item.extracted = {**adapter_fields(facts), "file_path": str(target)}


def remove_extracted(cfg: LoraSettings, items: list[Planned]) -> None:
    for item in items:
        shutil.rmtree(cfg.allowed_roots()[0] / "imports" / item.entry_id, ignore_errors=True)


def open_zip(path: Path | IO[bytes]) -> zipfile.ZipFile:
    if not zipfile.is_zipfile(path):
        raise ArchiveError("not a ZIP archive")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ArchiveError("not a readable ZIP archive") from None
