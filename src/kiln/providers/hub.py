"""Hugging Face Hub client over its REST API: model search, model info (files with sizes) and
streamed file downloads into a local directory, through the shared provider HTTP client.

    hub = HubClient(endpoint, token=..., offline_guard=...)
    await hub.search("qwen", limit=20)          -> [HubModel]
    await hub.model_info("org/name")            -> dict (id, sha, tags, siblings[{rfilename,size}], ...)
    await hub.download("org/name", target, files, on_bytes=..., should_stop=...)

Repo ids and file names are checked before use: a file whose path would leave the target
directory (absolute, `..`, backslashes, control characters) is refused, never written. Files are
written to `<name>.part` and renamed when complete, so a cancelled or failed download leaves no
half file under its final name.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from kiln.providers.http import OfflineGuard, ProviderClient, ProviderProtocolError

REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
MAX_FILES = 2000
CHUNK = 1024 * 1024
MAX_REDIRECTS = 5


class HubError(Exception):
    """A request or a repository the client refuses (bad id, unsafe file name, too large)."""


@dataclass(frozen=True, slots=True)
class HubFile:
    path: str
    size: int | None


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id or "") or ".." in repo_id:
        raise HubError(f"invalid repository id {repo_id[:100]!r}; expected owner/name")
    return repo_id


def safe_relative(path: str) -> str:
    """The file path if it stays inside its directory, else HubError."""
    if not isinstance(path, str) or not path or len(path) > 1000 or path.startswith("/") or "\\" in path:
        raise HubError(f"unsafe file name {str(path)[:100]!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") or len(p.encode()) > 255 or any(ord(c) < 32 for c in p) for p in parts):
        raise HubError(f"unsafe file name {path[:100]!r}")
    return path


def repo_dir_name(repo_id: str) -> str:
    return check_repo_id(repo_id).replace("/", "--")


class HubClient:
    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        offline_guard: OfflineGuard | None = None,
        timeout: float = 60.0,
        origin: str = "cloud",
    ):
        self.timeout, self.guard = timeout, offline_guard
        self.http = ProviderClient(
            endpoint,
            name="huggingface",
            origin=origin,
            api_key=token,  # type: ignore[arg-type]
            timeout=timeout,
            max_retries=2,
            offline_guard=offline_guard,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    @asynccontextmanager
    async def _follow(self, url: str) -> AsyncIterator[Any]:
        """Stream `url`, following redirects (the Hub sends large files to a CDN). The token goes
        only to the Hub's own origin; another origin gets a request without credentials."""
        client, owned = self.http, None
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with client.stream("GET", url, expect_ok=False) as response:
                    location = response.headers.get("location")
                    if response.status_code in (301, 302, 303, 307, 308) and location:
                        target = urljoin(str(response.url), location)
                        if urlsplit(target).scheme not in ("http", "https"):
                            raise HubError("redirect to a non-HTTP location")
                        same = urlsplit(target)[:2] == urlsplit(self.http.base_url)[:2]
                        if not same and owned is None:
                            owned = ProviderClient(
                                target,
                                name="huggingface-cdn",
                                origin=self.http.origin,
                                timeout=self.timeout,
                                max_retries=2,
                                offline_guard=self.guard,
                            )
                        client = self.http if same else owned  # type: ignore[assignment]
                        url = target
                        continue
                    if not response.is_success:
                        raise client.error_for(response, await response.aread())
                    yield response
                    return
            raise HubError("too many redirects")
        finally:
            if owned is not None:
                await owned.aclose()

    async def search(
        self, query: str | None, *, limit: int = 20, task: str | None = None, sort: str = "downloads"
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": max(1, min(limit, 100)), "sort": sort, "direction": -1}
        if query:
            params["search"] = query[:200]
        if task:
            params["pipeline_tag"] = task[:64]
        data = await self.http.json("GET", "/api/models", params=params)
        if not isinstance(data, list):
            raise ProviderProtocolError("huggingface", "model search did not answer a list")
        out = []
        for item in data[:100]:
            if not isinstance(item, dict) or not isinstance(item.get("id") or item.get("modelId"), str):
                continue
            repo = item.get("id") or item.get("modelId")
            out.append(
                {
                    "source_id": repo,
                    "name": repo.rsplit("/", 1)[-1],
                    "downloads": item.get("downloads"),
                    "likes": item.get("likes"),
                    "tags": [t for t in item.get("tags") or [] if isinstance(t, str)],
                    "pipeline_tag": item.get("pipeline_tag"),
                    "provider": "huggingface",
                }
            )
        return out

    async def model_info(self, repo_id: str, revision: str | None = None) -> dict[str, Any]:
        path = f"/api/models/{quote(check_repo_id(repo_id), safe='/')}"
        if revision:
            if not REVISION.match(revision):
                raise HubError("invalid revision")
            path += f"/revision/{quote(revision, safe='')}"
        data = await self.http.json("GET", path, params={"blobs": "true"})
        if not isinstance(data, dict):
            raise ProviderProtocolError("huggingface", "model info is not an object")
        return data

    @staticmethod
    def files_of(info: dict[str, Any]) -> list[HubFile]:
        siblings = info.get("siblings") or []
        if not isinstance(siblings, list) or len(siblings) > MAX_FILES:
            raise HubError(f"repository lists more than {MAX_FILES} files")
        files = []
        for item in siblings:
            if isinstance(item, dict) and isinstance(item.get("rfilename"), str):
                size = item.get("size")
                files.append(HubFile(safe_relative(item["rfilename"]), size if isinstance(size, int) else None))
        return files

    async def download(
        self,
        repo_id: str,
        target: Path,
        files: list[HubFile],
        *,
        revision: str = "main",
        max_bytes: int,
        on_bytes: Callable[[int], Awaitable[None]] | None = None,
        should_stop: Callable[[], None] | None = None,
    ) -> int:
        """Download `files` into `target`; returns bytes written. Raises HubError past `max_bytes`."""
        check_repo_id(repo_id)
        if not REVISION.match(revision):
            raise HubError("invalid revision")
        root = await asyncio.to_thread(_prepare, target)
        written = 0
        for item in files:
            dest = (root / safe_relative(item.path)).resolve()
            if root not in dest.parents:
                raise HubError(f"unsafe file name {item.path[:100]!r}")
            part = dest.with_name(dest.name + ".part")
            url = f"/{quote(repo_id, safe='/')}/resolve/{quote(revision, safe='')}/{quote(item.path, safe='/')}"
            handle = await asyncio.to_thread(_open_part, part)
            try:
                async with self._follow(url) as response:
                    async for chunk in response.aiter_bytes(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise HubError(f"download exceeds the limit of {max_bytes} bytes")
                        await asyncio.to_thread(handle.write, chunk)
                        if should_stop is not None:
                            should_stop()
                        if on_bytes is not None:
                            await on_bytes(len(chunk))
                await asyncio.to_thread(_finish, handle, part, dest)
            finally:
                await asyncio.to_thread(_discard, handle, part)
        return written


def _prepare(target: Path) -> Path:
    root = target.resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _open_part(part: Path) -> Any:
    part.parent.mkdir(parents=True, exist_ok=True)
    return open(part, "wb")  # noqa: SIM115  (closed by _finish or _discard)


def _finish(handle: Any, part: Path, dest: Path) -> None:
    handle.close()
    os.replace(part, dest)


def _discard(handle: Any, part: Path) -> None:
    handle.close()
    if part.exists():
        part.unlink()
