"""Optional publishing of media files to a Hugging Face dataset repository.

Offers
* ``media_path(user_id, media_id, filename, day)`` -> ``media/{user_id}/{YYYY-MM-DD}/{media_id}_{filename}``
  and ``thumbnail_path(...)`` (``..._thumbnail_{stem}.jpg``: thumbnails are JPEG, so named);
* ``HfSink(token, repo_id, endpoint=None)`` with ``publish(files) -> list[commit oid]`` (batched:
  one commit per ``max_files_per_commit`` files, because the Hub allows ~128 commits/hour/repo),
  ``remove(paths) -> commit oid | None`` (one commit of deletions; paths already gone are
  skipped, not an error) and ``url_for(path)`` (the public ``resolve`` URL);
* ``hf_sink_from_settings(token, repo_id, endpoint) -> HfSink | None`` (None = not configured).

Errors: ``HfRateLimited`` (429, carries ``retry_after`` seconds) and ``HfSinkError`` for the
rest, so a job handler can map them to a retry or a failure. ``huggingface_hub`` is an
optional dependency (extra ``media``), imported only when a sink is built.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

DEFAULT_ENDPOINT = "https://huggingface.co"
_UNSAFE = re.compile(r"[^\w.\- ()+,@=]+", re.UNICODE)


class HfSinkError(RuntimeError):
    """Publishing to the Hub failed."""


class HfRateLimited(HfSinkError):
    """The Hub answered 429; retry after ``retry_after`` seconds (None if it did not say)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class HfFile:
    path_in_repo: str
    data: bytes | Path  # content, or a local file to stream from


def safe_filename(filename: str) -> str:
    """The client's file name reduced to one harmless path segment."""
    name = PurePosixPath(filename.replace("\\", "/")).name  # drop any directory part
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:180] or "file"


def _day(day: date | datetime | None) -> str:
    if day is None:
        day = datetime.now(UTC)
    if isinstance(day, datetime):
        # A naive datetime is taken as UTC; an aware one is converted, so the folder is the UTC date.
        day = (day.astimezone(UTC) if day.tzinfo else day).date()
    return day.isoformat()


def media_path(user_id: str, media_id: str, filename: str, day: date | datetime | None = None) -> str:
    return f"media/{safe_filename(str(user_id))}/{_day(day)}/{media_id}_{safe_filename(filename)}"


def thumbnail_path(user_id: str, media_id: str, filename: str, day: date | datetime | None = None) -> str:
    stem = PurePosixPath(safe_filename(filename)).stem or "file"
    return f"media/{safe_filename(str(user_id))}/{_day(day)}/{media_id}_thumbnail_{stem}.jpg"


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


class HfSink:
    def __init__(
        self,
        token: str | None,
        repo_id: str,
        *,
        endpoint: str | None = None,
        repo_type: str = "dataset",
        revision: str = "main",
        max_files_per_commit: int = 50,
    ) -> None:
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise HfSinkError("publishing to Hugging Face needs huggingface_hub: pip install 'kiln[media]'") from None
        if "/" not in repo_id:
            raise HfSinkError(f"repo id must look like 'owner/name', got {repo_id!r}")
        self.repo_id, self.repo_type, self.revision = repo_id, repo_type, revision
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self.max_files_per_commit = max(1, max_files_per_commit)
        self._api = HfApi(endpoint=self.endpoint, token=token or False)

    def url_for(self, path_in_repo: str) -> str:
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        rev = quote(self.revision, safe="")
        return f"{self.endpoint}/{kind}{self.repo_id}/resolve/{rev}/{quote(path_in_repo)}"

    def _commit(self, operations: list[Any], message: str) -> str:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            info = self._api.create_commit(
                repo_id=self.repo_id,
                repo_type=self.repo_type,
                revision=self.revision,
                operations=operations,
                commit_message=message,
            )
        except HfHubHTTPError as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status_code", None)
            if status == 429:
                raise HfRateLimited("Hugging Face Hub rate limit reached", _retry_after(response)) from None
            raise HfSinkError(f"Hugging Face Hub answered {status}: {exc.server_message or exc}") from None
        except (OSError, ValueError) as exc:
            raise HfSinkError(f"Hugging Face commit failed: {exc}") from None
        return info.oid

    def publish(self, files: Sequence[HfFile], message: str = "Upload media") -> list[str]:
        """Add or replace files; returns the commit oids (one per batch, in order)."""
        from huggingface_hub import CommitOperationAdd

        oids = []
        for start in range(0, len(files), self.max_files_per_commit):
            batch = files[start : start + self.max_files_per_commit]
            ops = [
                CommitOperationAdd(
                    path_in_repo=f.path_in_repo, path_or_fileobj=str(f.data) if isinstance(f.data, Path) else f.data
                )
                for f in batch
            ]
            suffix = f" ({start // self.max_files_per_commit + 1})" if len(files) > len(batch) else ""
            oids.append(self._commit(ops, f"{message}{suffix}: {len(batch)} file(s)"))
        return oids

    def existing(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` are files in the repo now (one API call)."""
        from huggingface_hub.errors import HfHubHTTPError

        if not paths:
            return set()
        try:
            infos = self._api.get_paths_info(
                self.repo_id, list(paths), repo_type=self.repo_type, revision=self.revision
            )
        except HfHubHTTPError as exc:
            response = getattr(exc, "response", None)
            if getattr(response, "status_code", None) == 429:
                raise HfRateLimited("Hugging Face Hub rate limit reached", _retry_after(response)) from None
            raise HfSinkError(f"Hugging Face Hub answered {getattr(response, 'status_code', None)}") from None
        return {i.path for i in infos if i.__class__.__name__ == "RepoFile"}

    def remove(self, paths: Sequence[str], message: str = "Delete media") -> str | None:
        """Delete files in one commit. Paths not in the repo are ignored; None if nothing to do."""
        from huggingface_hub import CommitOperationDelete

        wanted = list(dict.fromkeys(paths))  # de-duplicate, keep order
        present = self.existing(wanted)
        ops = [CommitOperationDelete(path_in_repo=p, is_folder=False) for p in wanted if p in present]
        if not ops:
            return None
        return self._commit(ops, f"{message}: {len(ops)} file(s)")


def hf_sink_from_settings(
    token: str | None, repo_id: str | None, endpoint: str | None = None, **kwargs: Any
) -> HfSink | None:
    """The configured sink, or None when no repo id is set (publishing is optional)."""
    if not repo_id:
        return None
    return HfSink(token, repo_id, endpoint=endpoint, **kwargs)
