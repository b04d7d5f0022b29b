"""BlobStore: uploads and outputs, on a local directory (default) or an S3-compatible bucket.

Keys are relative `a/b/c.ext` strings, validated identically by both adapters so a key that
works locally also works on S3 and vice versa. Writes stream: nothing is held in memory beyond
one chunk (local) or obstore's multipart buffer (S3).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from kiln.settings import Settings

READ_CHUNK = 1024 * 1024
# Local writes batch small incoming chunks so each thread hop moves a useful amount of data.
WRITE_BATCH = 1024 * 1024
SHA_XATTR = "user.kiln.sha256"
SHA_ATTRIBUTE = "sha256"  # S3 user metadata (x-amz-meta-sha256)


PARTIAL_PREFIX, PARTIAL_SUFFIX = ".upload-", ".part"  # a local write in progress: <dir>/.upload-XXXX.part


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

    async def write_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
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

    async def read_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
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
        return BlobInfo(key, st.st_size, sha, datetime.fromtimestamp(st.st_mtime, UTC),
                        f"{st.st_size:x}-{st.st_mtime_ns:x}")

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


class S3BlobStore(BlobStore):
    """S3-compatible storage through obstore (AWS, MinIO, R2, Ceph, moto ...)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        part_size: int = 8 * 1024 * 1024,
        max_concurrency: int = 4,
    ) -> None:
        from obstore.store import S3Store

        config: dict[str, Any] = {"region": region}
        if endpoint_url:
            # Path-style addressing: custom endpoints (MinIO, moto) rarely have per-bucket DNS.
            config["endpoint"] = endpoint_url
            config["virtual_hosted_style_request"] = False
        if access_key_id and secret_access_key:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        client = {"allow_http": True} if endpoint_url and endpoint_url.startswith("http://") else None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.store = S3Store(bucket, prefix=self.prefix or None, config=config, client_options=client)
        # part_size x max_concurrency bounds the memory a streaming upload can hold.
        self.part_size = part_size
        self.max_concurrency = max_concurrency

    async def write_stream(
        self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None
    ) -> BlobInfo:
        import obstore

        validate_key(key)
        hasher = _Hasher(max_bytes)
        source = aiter(chunks)
        # Read up to one part first: a blob that fits is put in one request with its sha256 as
        # metadata (so stat() knows it); a bigger one goes multipart and only the caller learns it.
        head: list[bytes] = []
        buffered = 0
        async for chunk in source:
            hasher.feed(chunk)
            head.append(chunk)
            buffered += len(chunk)
            if buffered >= self.part_size:
                break
        else:
            return await self._put_small(key, b"".join(head))

        async def rest() -> AsyncIterator[bytes]:
            for chunk in head:
                yield chunk
            head.clear()
            async for chunk in source:
                # Raising here makes obstore abort the multipart upload: no object appears.
                hasher.feed(chunk)
                yield chunk

        result = await obstore.put_async(
            self.store, key, rest(), use_multipart=True,
            chunk_size=self.part_size, max_concurrency=self.max_concurrency,
        )
        return BlobInfo(key, hasher.size, hasher.sha.hexdigest(), datetime.now(UTC), result.get("e_tag"))

    async def write_bytes(self, key: str, data: bytes) -> BlobInfo:
        validate_key(key)
        return await self._put_small(key, bytes(data))

    async def _put_small(self, key: str, data: bytes) -> BlobInfo:
        import obstore

        digest = hashlib.sha256(data).hexdigest()
        result = await obstore.put_async(
            self.store, key, data, attributes={SHA_ATTRIBUTE: digest}, use_multipart=False
        )
        return BlobInfo(key, len(data), digest, datetime.now(UTC), result.get("e_tag"))

    async def read_stream(
        self, key: str, start: int | None = None, end: int | None = None
    ) -> AsyncIterator[bytes]:
        import obstore

        validate_key(key)
        options: dict[str, Any] = {}
        if start is not None or end is not None:
            # S3 rejects empty / past-the-end ranges; clamp against the real size first.
            meta = await obstore.head_async(self.store, key)
            lo, hi = _clamp(start, end, meta["size"])
            if hi <= lo:
                return
            options["range"] = (lo, hi)
        result = await obstore.get_async(self.store, key, options=options or None)
        async for chunk in result.stream(min_chunk_size=READ_CHUNK):
            yield bytes(chunk)

    async def stat(self, key: str) -> BlobInfo | None:
        import obstore

        validate_key(key)
        try:
            result = await obstore.get_async(self.store, key, options={"head": True})
        except FileNotFoundError:
            return None
        meta = result.meta
        sha = result.attributes.get(SHA_ATTRIBUTE)
        return BlobInfo(key, meta["size"], sha, meta["last_modified"], meta.get("e_tag"))

    async def delete(self, key: str) -> bool:
        import obstore

        if await self.stat(key) is None:
            return False
        await obstore.delete_async(self.store, key)
        return True

    async def delete_prefix(self, prefix: str) -> int:
        import obstore

        prefix = _prefix_key(prefix)
        paths = [prefix] if await self.stat(prefix) is not None else []
        async for batch in obstore.list(self.store, prefix + "/", chunk_size=1000):
            paths.extend(meta["path"] for meta in batch)
        # Listed paths come back without the store prefix, ready to pass to delete.
        for i in range(0, len(paths), 1000):
            await obstore.delete_async(self.store, paths[i : i + 1000])
        return len(paths)

    async def presigned_url(self, key: str, expires_seconds: int = 3600) -> str | None:
        import obstore

        validate_key(key)
        return await obstore.sign_async(self.store, "GET", key, timedelta(seconds=expires_seconds))


def blob_store_from_settings(settings: Settings) -> BlobStore:
    if not settings.blob_url:
        return LocalBlobStore(settings.home / "blobs")
    url = urlparse(settings.blob_url)
    if url.scheme not in ("s3", "s3a") or not url.netloc:
        raise ValueError(f"unsupported KILN_BLOB_URL {settings.blob_url!r}; expected s3://bucket/prefix")
    return S3BlobStore(
        url.netloc,
        url.path.strip("/"),
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
