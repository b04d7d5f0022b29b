"""What both blob stores share: keys, errors, the BlobStore interface, streaming helpers."""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

READ_CHUNK = 1024 * 1024


class UnsafePathError(ValueError):
    """A key or client path that is malformed or would escape its root."""


class BlobTooLarge(ValueError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"blob exceeds the limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    sha256: str | None = None
    modified: datetime | None = None
    etag: str | None = None


def validate_key(key: str, *, what: str = "key") -> str:
    """Return `key` if it is a canonical relative `a/b/c` path, else raise UnsafePathError."""
    if not isinstance(key, str) or not key:
        raise UnsafePathError(f"empty {what}")
    if "\\" in key or "\x00" in key:
        raise UnsafePathError(f"{what} contains a backslash or NUL")
    if key.startswith("/"):
        raise UnsafePathError(f"{what} is absolute")
    for part in key.split("/"):
        # Empty and "." segments are refused too: "a//b" and "a/./b" would name the same local
        # file as "a/b" but a different S3 object.
        if part in ("", ".", ".."):
            raise UnsafePathError(f"{what} has an empty, '.' or '..' segment")
    return key


def _prefix_key(prefix: str) -> str:
    return validate_key(prefix.rstrip("/"), what="prefix")


class BlobStore(ABC):
    """The port. All methods are async except `local_path`."""

    @abstractmethod
    async def write_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo: ...

    async def write_bytes(self, key: str, data: bytes) -> BlobInfo:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.write_stream(key, one())

    @abstractmethod
    def read_stream(self, key: str, start: int | None = None, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield bytes [start, end) (end exclusive); FileNotFoundError if the blob is missing."""

    async def read_bytes(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.read_stream(key)])

    @abstractmethod
    async def stat(self, key: str) -> BlobInfo | None: ...

    async def remove_partials(self) -> int:
        """Remove what interrupted writes left (none for stores whose writes are atomic)."""
        return 0

    async def exists(self, key: str) -> bool:
        return await self.stat(key) is not None

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete one blob; True if it existed."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Delete `prefix` and everything under `prefix/`; returns how many blobs went."""

    def local_path(self, key: str) -> Path | None:
        return None

    async def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        return None


async def read_file_range(path: Path, start: int, length: int, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
    """Stream `length` bytes of a local file from `start`, one chunk in memory at a time."""
    fh = await asyncio.to_thread(open, path, "rb")
    try:
        fh.seek(start)
        remaining = length
        while remaining > 0:
            chunk = await asyncio.to_thread(fh.read, min(chunk_size, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()


def _clamp(start: int | None, end: int | None, size: int) -> tuple[int, int]:
    lo = 0 if start is None else start
    hi = size if end is None else min(end, size)
    if lo < 0 or (end is not None and end < 0):
        raise ValueError("negative range bound")
    return lo, max(lo, hi)


class _Hasher:
    """Counts and hashes a stream, enforcing max_bytes as data arrives (not after)."""

    def __init__(self, max_bytes: int | None) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes

    def feed(self, chunk: bytes) -> None:
        self.count(chunk)
        self.sha.update(chunk)

    def count(self, chunk: bytes) -> None:
        """The size check alone (the caller hashes the chunk later, e.g. on a writer thread)."""
        self.size += len(chunk)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise BlobTooLarge(self.max_bytes)
