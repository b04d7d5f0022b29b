"""The S3-compatible blob store (through obstore)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from kiln.core.blobs.common import READ_CHUNK, BlobInfo, BlobStore, _clamp, _Hasher, _prefix_key, validate_key

SHA_ATTRIBUTE = "sha256"  # S3 user metadata (x-amz-meta-sha256)


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

    async def write_stream(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int | None = None) -> BlobInfo:
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
            self.store,
            key,
            rest(),
            use_multipart=True,
            chunk_size=self.part_size,
            max_concurrency=self.max_concurrency,
        )
        return BlobInfo(key, hasher.size, hasher.sha.hexdigest(), datetime.now(UTC), result.get("e_tag"))

    async def write_bytes(self, key: str, data: bytes) -> BlobInfo:
        validate_key(key)
        return await self._put_small(key, bytes(data))

    async def _put_small(self, key: str, data: bytes) -> BlobInfo:
        import obstore

        digest = hashlib.sha256(data).hexdigest()
        result = await obstore.put_async(self.store, key, data, attributes={SHA_ATTRIBUTE: digest}, use_multipart=False)
        return BlobInfo(key, len(data), digest, datetime.now(UTC), result.get("e_tag"))

    async def read_stream(self, key: str, start: int | None = None, end: int | None = None) -> AsyncIterator[bytes]:
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
