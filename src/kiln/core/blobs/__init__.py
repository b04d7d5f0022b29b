"""BlobStore: uploads and outputs, on a local directory (default) or an S3-compatible bucket.

Keys are relative `a/b/c.ext` strings, validated identically by both adapters so a key that
works locally also works on S3 and vice versa. Writes stream: nothing is held in memory beyond
one chunk (local) or obstore's multipart buffer (S3).

The package is split by concern: `common` (keys, errors, the interface, streaming helpers),
`local` (the directory store) and `s3` (the S3 store); everything is importable from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from kiln.core.blobs.common import (
    READ_CHUNK,
    BlobInfo,
    BlobStore,
    BlobTooLarge,
    UnsafePathError,
    read_file_range,
    validate_key,
)
from kiln.core.blobs.local import PARTIAL_PREFIX, PARTIAL_SUFFIX, SHA_XATTR, WRITE_BATCH, LocalBlobStore
from kiln.core.blobs.s3 import SHA_ATTRIBUTE, S3BlobStore

if TYPE_CHECKING:
    from kiln.settings import Settings

__all__ = [
    "PARTIAL_PREFIX",
    "PARTIAL_SUFFIX",
    "READ_CHUNK",
    "SHA_ATTRIBUTE",
    "SHA_XATTR",
    "WRITE_BATCH",
    "BlobInfo",
    "BlobStore",
    "BlobTooLarge",
    "LocalBlobStore",
    "S3BlobStore",
    "UnsafePathError",
    "blob_store_from_settings",
    "read_file_range",
    "validate_key",
]


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
