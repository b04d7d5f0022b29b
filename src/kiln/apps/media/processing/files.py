"""Blobs as local files, for steps that need a path (Pillow in the CPU pool, the Hub upload)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any


@asynccontextmanager
async def local_copy(blobs: Any, key: str) -> AsyncIterator[Path]:
    """A local file with the blob's bytes: the store's own file, or (S3) a temporary copy
    streamed chunk by chunk, so a large original never sits whole in memory."""
    local = blobs.local_path(key)
    if local is not None:
        if not local.is_file():
            raise FileNotFoundError(key)
        yield local
        return
    fd, name = tempfile.mkstemp(prefix="kiln-media-", suffix=".blob")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in blobs.read_stream(key):
                await asyncio.to_thread(fh.write, chunk)
        yield path
    finally:
        await asyncio.to_thread(path.unlink, True)
