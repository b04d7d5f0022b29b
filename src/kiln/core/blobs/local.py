"""The local-directory blob store (the default): atomic writes through a temp file, hashed on
the writer thread."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kiln.core.blobs.common import (
    BlobInfo,
    BlobStore,
    UnsafePathError,
    _clamp,
    _Hasher,
    _prefix_key,
    read_file_range,
    validate_key,
)

# Local writes batch small incoming chunks so each thread hop moves a useful amount of data.
WRITE_BATCH = 1024 * 1024
SHA_XATTR = "user.kiln.sha256"
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".upload-", ".part"  # a local write in progress: <dir>/.upload-XXXX.part


def _write_hashed(fh: Any, sha: Any, batch: list[bytes]) -> None:
    """On a worker thread: hash and write a batch. hashlib releases the GIL on large buffers, so
    the event loop keeps serving while a multi-MB upload is hashed."""
    for chunk in batch:
        sha.update(chunk)
    fh.writelines(batch)


def _publish(tmp: Path, path: Path, digest: str) -> None:
    """Make a finished temp file the blob: checksum cache, ordinary permissions, atomic rename."""
    with contextlib.suppress(OSError):  # xattrs are a cache; some filesystems lack them
        os.setxattr(tmp, SHA_XATTR, digest.encode())
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; blobs are ordinary files
    os.replace(tmp, path)


def _discard(tmp: Path, created: list[Path]) -> None:
    """Undo a failed local write: the temp file, then the directories it created (deepest first)."""
    tmp.unlink(missing_ok=True)
    for directory in created:
        with contextlib.suppress(OSError):  # not empty: another writer uses it now
            directory.rmdir()


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root = self.root.resolve()

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        # resolve() follows symlinks, so a link inside the root that points out is caught here.
        if path != self.root and not path.is_relative_to(self.root):
            raise UnsafePathError("key resolves outside the blob root")
        return path

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def remove_partials(self) -> int:
        """Delete the temp files of writes a crash interrupted (`.upload-*.part`); their count."""

        def sweep() -> int:
            removed = 0
            for folder, _dirs, files in os.walk(self.root):
                for name in files:
                    if name.startswith(PARTIAL_PREFIX) and name.endswith(PARTIAL_SUFFIX):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(os.path.join(folder, name))
                            removed += 1
            return removed

        return await asyncio.to_thread(sweep)

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None) -> BlobInfo:
        path = self._path(key)
        created = self._missing_parents(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
        tmp = Path(tmp_name)
        hasher = _Hasher(max_bytes)
        try:
            with os.fdopen(fd, "wb") as fh:
                batch: list[bytes] = []
                pending = 0
                async for chunk in chunks:
                    hasher.count(chunk)  # the limit as data arrives; the hash with the write
                    batch.append(chunk)
                    pending += len(chunk)
                    if pending >= WRITE_BATCH:
                        await asyncio.to_thread(_write_hashed, fh, hasher.sha, batch)
                        batch, pending = [], 0
                if batch:
                    await asyncio.to_thread(_write_hashed, fh, hasher.sha, batch)
            digest = hasher.sha.hexdigest()
            _publish(tmp, path, digest)
        except BaseException:
            _discard(tmp, created)
            raise
        return BlobInfo(key, hasher.size, digest, datetime.now(UTC))

    async def write_bytes(self, key: str, data: bytes) -> BlobInfo:
        # A small whole blob (a thumbnail): every step in one thread hop, not one per step.
        path = self._path(key)
        return await asyncio.to_thread(self._write_whole, key, path, data)

    def _write_whole(self, key: str, path: Path, data: bytes) -> BlobInfo:
        created = self._missing_parents(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            digest = hashlib.sha256(data).hexdigest()
            _publish(tmp, path, digest)
        except BaseException:
            _discard(tmp, created)
            raise
        return BlobInfo(key, len(data), digest, datetime.now(UTC))

    def _missing_parents(self, path: Path) -> list[Path]:
        missing = []
        parent = path.parent
        while parent != self.root and not parent.exists():
            missing.append(parent)
            parent = parent.parent
        return missing

    async def read_stream(self, key: str, start: int | None = None, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        size = (await asyncio.to_thread(path.stat)).st_size
        lo, hi = _clamp(start, end, size)
        async for chunk in read_file_range(path, lo, hi - lo):
            yield chunk

    async def stat(self, key: str) -> BlobInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if not path.is_file():
            return None
        try:
            sha: str | None = os.getxattr(path, SHA_XATTR).decode()
        except OSError:
            sha = None
        return BlobInfo(
            key, st.st_size, sha, datetime.fromtimestamp(st.st_mtime, UTC), f"{st.st_size:x}-{st.st_mtime_ns:x}"
        )

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        if not path.is_file():
            return False
        path.unlink(missing_ok=True)
        return True

    async def delete_prefix(self, prefix: str) -> int:
        path = self._path(_prefix_key(prefix))
        if path.is_file():
            path.unlink(missing_ok=True)
            return 1
        if not path.is_dir():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        await asyncio.to_thread(shutil.rmtree, path)
        return count
