"""Assets in: register a path, upload a file, scan a directory or take the picker's choice."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.common import BadRequest, Conflict, RoboticsError
from kiln.apps.robotics.models import Asset
from kiln.apps.robotics.reading.reader import RecordingError, detect_source
from kiln.apps.robotics.views import asset_summary
from kiln.core.blobs import UnsafePathError
from kiln.core.db import new_id, utcnow
from kiln.core.files import check_client_path, client_path

OUTSIDE_ROOTS = "asset path is not inside a folder recordings may be registered from (KILN_ROBOTICS_ROOTS)"
SUPPORTED = ("bag", "mcap", "db3")
SUPPORTED_TEXT = "supported: bag, mcap, db3, rosbag2 directory"
_TYPES = {"bag": "bag", "mcap": "mcap", "sqlite3": "db3"}


def _classify(path: Path) -> tuple[str, int]:
    """(file_type, size) of a recording path, or a 400 saying why it is not one."""
    if not path.exists():
        raise BadRequest(f"asset path does not exist: {path}")
    if path.is_file() and path.suffix.lower().lstrip(".") not in SUPPORTED:
        raise BadRequest(f"unsupported asset type: {path.name} ({SUPPORTED_TEXT})")
    if not path.is_file() and not path.is_dir():
        raise BadRequest(f"asset path is not a file: {path}")
    try:
        src = detect_source(path)
    except RecordingError as exc:
        raise BadRequest(f"asset path is not a recording: {exc}") from None
    if src.layout == "directory":
        kind = "rosbag2" if (path / "metadata.yaml").exists() else _TYPES[src.storage_format]
        return kind, sum(f.stat().st_size for f in src.files if f.exists())
    return _TYPES[src.storage_format], path.stat().st_size


def check_roots(path: Path, roots: list[Path]) -> None:
    """One answer for every path outside the roots, whether it exists or not."""
    if not any(path.is_relative_to(r) for r in roots):
        raise BadRequest(OUTSIDE_ROOTS)


def readable_path(stored: str, roots: list[Path]) -> str:
    """A registered recording's path, resolved again when it is read: refused with the
    registration answer when its root left KILN_ROBOTICS_ROOTS or a symlink swapped in since
    registration leads outside the roots."""
    try:
        path = Path(stored).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise BadRequest(OUTSIDE_ROOTS) from None
    check_roots(path, roots)
    return str(path)


async def register_path(
    session: AsyncSession, raw_path: str, roots: list[Path], *, source: str = "path", sha256: str | None = None
) -> Asset:
    path = await asyncio.to_thread(_resolve, raw_path)
    check_roots(path, roots)
    file_type, size = await asyncio.to_thread(_classify, path)
    if await session.scalar(select(Asset.id).where(Asset.file_path == str(path))):
        raise Conflict(f"asset already registered: {path}")
    now = utcnow()
    asset = Asset(
        id=new_id(),
        file_path=str(path),
        file_name=path.name,
        file_type=file_type,
        file_size=size,
        indexing_status="pending",
        source=source,
        content_sha256=sha256,
        registered_at=now,
        updated_at=now,
    )
    session.add(asset)
    try:
        await session.commit()
    except IntegrityError:  # registered concurrently by another request
        await session.rollback()
        raise Conflict(f"asset already registered: {path}") from None
    return asset


def _header_text(header: str) -> str:
    """Header values arrive latin-1 decoded: undo that for UTF-8 names; accept RFC 8187 `UTF-8''%..`."""
    if header[:7].lower() == "utf-8''":
        return unquote(header[7:], encoding="utf-8", errors="strict")
    try:
        return header.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return header


def upload_name(header: str | None) -> str:
    if header is None or not header.strip():
        raise BadRequest("x-file-name header is required for asset uploads")
    try:
        text = _header_text(header.strip())
    except UnicodeDecodeError:
        raise BadRequest("x-file-name is not valid UTF-8") from None
    name = Path(text.replace("\\", "/").replace("\x00", "")).name
    if len(name.encode()) > 255:
        raise BadRequest("x-file-name is longer than 255 bytes")
    if name in ("", ".", ".."):
        raise BadRequest("x-file-name must name a file, e.g. run1.mcap")
    if Path(name).suffix.lower().lstrip(".") not in SUPPORTED:
        raise BadRequest(f"unsupported asset type: {name} (supported: bag, mcap, db3)")
    try:
        return check_client_path(name)
    except UnsafePathError as exc:
        raise BadRequest(f"x-file-name: {exc}") from None


async def upload(session: AsyncSession, home: Path, name: str, chunks: AsyncIterator[bytes]) -> Asset:
    """Stream the body to `uploads/<id>/<name>` (never held whole in memory), then register it.

    Each upload gets its own folder, so two different files with one name never collide;
    the same content under the same name is refused as a duplicate.
    """
    root = (home / "robotics" / "uploads").resolve()
    folder = root / new_id()
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    target = folder / name
    digest, size = hashlib.sha256(), 0
    try:
        fh = await asyncio.to_thread(open, target, "wb")
        try:
            async for chunk in chunks:
                if chunk:
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(fh.write, chunk)
        finally:
            await asyncio.to_thread(fh.close)
        if size == 0:
            raise BadRequest("uploaded file is empty")
        sha = digest.hexdigest()
        twin = await session.scalar(select(Asset).where(Asset.content_sha256 == sha, Asset.file_name == name))
        if twin is not None:
            raise Conflict(f"asset already registered: {twin.file_path}")
        return await register_path(session, str(target), [root], source="upload", sha256=sha)
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise


def _resolve(raw: str) -> Path:
    try:
        return client_path(raw)
    except (UnsafePathError, ValueError, OSError, RuntimeError):  # NUL, over-long names, loops, unknown ~user
        raise BadRequest("asset path is not a valid path") from None


def _discover(directory: Path, recursive: bool, max_entries: int) -> tuple[list[Path], bool]:
    """Recording files and rosbag2 directories under `directory`, sorted, and whether the scan
    stopped at `max_entries` directory entries. Symlinked folders are not followed."""
    if not directory.exists():
        raise BadRequest(f"asset directory does not exist: {directory}")
    if not directory.is_dir():
        raise BadRequest(f"asset directory is not a directory: {directory}")
    found: list[Path] = []
    seen = 0
    for root, dirs, files in os.walk(directory):
        seen += len(dirs) + len(files)
        if seen > max_entries:
            return sorted(found), True
        here = Path(root)
        if here != directory and (here / "metadata.yaml").exists():
            found.append(here)  # a rosbag2 directory is one recording; do not list its parts
            dirs.clear()
            continue
        found += [here / f for f in files if Path(f).suffix.lower().lstrip(".") in SUPPORTED]
        if not recursive:
            found += [here / d for d in dirs if (here / d / "metadata.yaml").exists()]
            break
        dirs.sort()
    return sorted(found), False


async def scan_directory(
    session: AsyncSession, raw_dir: str, recursive: bool, roots: list[Path], max_entries: int
) -> dict[str, Any]:
    directory = await asyncio.to_thread(_resolve, raw_dir)
    check_roots(directory, roots)
    candidates, truncated = await asyncio.to_thread(_discover, directory, recursive, max_entries)
    registered, skipped = await register_many(session, [str(p) for p in candidates], roots, source="scan")
    return {
        "discovered_file_count": len(candidates),
        "recursive": recursive,
        "registered_assets": [asset_summary(a) for a in registered],
        "scanned_directory": str(directory),
        "skipped": skipped,
        "truncated": truncated,
    }


async def register_many(
    session: AsyncSession, paths: list[str], roots: list[Path], *, source: str
) -> tuple[list[Asset], list[dict[str, str]]]:
    registered: list[Asset] = []
    skipped: list[dict[str, str]] = []
    for p in paths:
        try:
            registered.append(await register_path(session, p, roots, source=source))
        except Conflict as exc:
            skipped.append({"detail": str(exc), "file_path": p, "reason": "duplicate"})
        except RoboticsError as exc:
            skipped.append({"detail": str(exc), "file_path": p, "reason": "invalid_path"})
    return registered, skipped
