"""Client-supplied paths and HTTP Range responses for local files and blobs."""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kiln.core.blobs import BlobStore, UnsafePathError, read_file_range

CHUNK = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


NAME_MAX, PATH_MAX = 255, 4095  # bytes, as Linux (and most file systems) count them


def check_client_path(client_path: str) -> str:
    """Refuse a client path no file system can hold: NUL, a component over 255 bytes, over 4095
    bytes in all, or text that is not UTF-8 (an unpaired surrogate). The OS would answer
    `ValueError` / `ENAMETOOLONG` from deep inside a request instead."""
    if "\x00" in client_path:
        raise UnsafePathError("path contains a NUL character")
    try:
        encoded = client_path.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError("path is not valid Unicode text") from None
    if len(encoded) > PATH_MAX:
        raise UnsafePathError(f"path is longer than {PATH_MAX} bytes")
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):
        raise UnsafePathError(f"a path component is longer than {NAME_MAX} bytes")
    return client_path


def client_path(raw: str) -> Path:
    """A local path a client named (checked as above), `~` expanded, made absolute and resolved."""
    return Path(check_client_path(raw.strip())).expanduser().resolve()


def safe_join(root: Path | str, client_path: str) -> Path:
    """Resolve `client_path` under `root`; refuse anything that lands outside, symlinks included."""
    check_client_path(client_path)
    if "\\" in client_path:
        raise UnsafePathError("path contains a backslash")
    if client_path.startswith("/") or Path(client_path).is_absolute():
        raise UnsafePathError("path is absolute")
    base = Path(root).resolve()
    target = (base / client_path).resolve()
    if target != base and not target.is_relative_to(base):
        raise UnsafePathError("path resolves outside its root")
    return target


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """Return (start, end_inclusive); None to ignore the header (serve 200); False if unsatisfiable.

    Multi-range and malformed headers are ignored, as RFC 9110 allows, rather than refused.
    """
    if not header:
        return None
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid range-spec: ignore it
    if start >= size:
        return False
    return start, min(int(last), size - 1) if last else size - 1


def _content_disposition(filename: str, inline: bool) -> str:
    kind = "inline" if inline else "attachment"
    quoted = quote(filename, safe="")
    if quoted == filename:
        return f'{kind}; filename="{filename}"'
    # RFC 5987 form for non-ASCII names, plus an ASCII fallback for old clients.
    fallback = re.sub(r'[\x00-\x1f\x7f"\\]', "_", filename.encode("ascii", "replace").decode())
    return f"{kind}; filename=\"{fallback}\"; filename*=utf-8''{quoted}"


def _not_modified(request: Request, etag: str, modified: datetime | None) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return inm.strip() == "*" or etag in [t.strip().removeprefix("W/") for t in inm.split(",")]
    ims = request.headers.get("if-modified-since")
    if ims and modified is not None:
        try:
            return modified.replace(microsecond=0) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


def _if_range_matches(request: Request, etag: str, modified: datetime | None) -> bool:
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # weak tags never match If-Range (strong comparison)
    try:
        return modified is not None and modified.replace(microsecond=0) == parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False


async def range_response(
    request: Request,
    source: Path | tuple[BlobStore, str],
    media_type: str,
    filename: str | None = None,
    *,
    inline: bool = False,
) -> Response:
    """Serve a local file or a blob with Range support (200 / 206 / 304 / 416).

    Raises FileNotFoundError when the source is missing, so the caller can answer in its
    contract's error shape.
    """
    if isinstance(source, tuple):
        store, key = source
        info = await store.stat(key)
        if info is None:
            raise FileNotFoundError(key)
        size, modified = info.size, info.modified
        etag = f'"{info.sha256}"' if info.sha256 else (info.etag or f'"{size:x}"')
        if not etag.startswith(('"', "W/")):
            etag = f'"{etag}"'

        def body(start: int, length: int) -> AsyncIterator[bytes]:
            return store.read_stream(key, start, start + length)
    else:
        path = Path(source)
        st = await asyncio.to_thread(os.stat, path)  # FileNotFoundError if missing
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(str(path))
        size, modified = st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'

        def body(start: int, length: int) -> AsyncIterator[bytes]:
            return read_file_range(path, start, length, CHUNK)

    headers = {"accept-ranges": "bytes", "etag": etag}
    if modified is not None:
        headers["last-modified"] = format_datetime(modified.astimezone(UTC), usegmt=True)
    if filename:
        headers["content-disposition"] = _content_disposition(filename, inline)

    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)

    wanted = parse_range(request.headers.get("range"), size)
    if wanted is not None and not _if_range_matches(request, etag, modified):
        wanted = None  # the client's cached copy is stale: send the whole thing
    if wanted is False:
        headers["content-range"] = f"bytes */{size}"
        return Response(status_code=416, headers=headers, media_type=media_type)

    if wanted is None:
        status, start, length = 200, 0, size
    else:
        start, end = wanted
        status, length = 206, end - start + 1
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    headers["content-length"] = str(length)
    if request.method == "HEAD" or length == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(body(start, length), status_code=status, headers=headers, media_type=media_type)
