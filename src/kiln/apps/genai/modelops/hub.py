"""Hugging Face discovery and model downloads (engine jobs with progress and cancel) into
`KILN_HOME/models/<owner>--<name>`. Internet features are refused while offline (403
`runtime_profile_blocks_internet`); the Hub client is cloud-origin, so the shared client's guard
refuses it too."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.models import GenaiDownload, GenaiModel
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.apps.genai.runtime.service import is_offline
from kiln.core.auth import User
from kiln.core.jobs import Job, JobCancelled
from kiln.providers.hub import HubClient, HubError, check_repo_id, repo_dir_name

DOWNLOAD_KIND = "genai.model_download"
ACTIVE = ("queued", "running")
MAX_PATTERNS = 50


def models_root(kernel: Any) -> Path:
    return kernel.settings.home / "models"


def hub_client(kernel: Any) -> HubClient:
    cfg = genai_settings(kernel)
    return HubClient(
        cfg.hf_endpoint, token=cfg.hf_token, offline_guard=offline_guard(kernel), timeout=cfg.provider_timeout_seconds
    )


async def ensure_online(session: AsyncSession, kernel: Any) -> None:
    if await is_offline(session, genai_settings(kernel)):
        raise GenaiError(
            403,
            "runtime_profile_blocks_internet",
            "Runtime profile is offline; Hugging Face discovery and downloads need online",
        )


def _hub_error(exc: Exception) -> GenaiError:
    if isinstance(exc, HubError):
        return GenaiError(400, "invalid_source_id", str(exc))
    status = getattr(exc, "status", None)
    if status == 404:
        return GenaiError(404, "model_source_not_found", "The Hub has no such model")
    return GenaiError(502, "huggingface_unavailable", f"Hugging Face Hub failed: {getattr(exc, 'message', exc)}")


TASK_PIPELINES = {"llm": "text-generation", "embeddings": "feature-extraction"}
SORTS = ("downloads", "likes", "lastModified", "createdAt", "trendingScore")


async def discover(
    session: AsyncSession, kernel: Any, query: str | None, limit: int, task: str | None, sort: str = "downloads"
) -> list[dict[str, Any]]:
    await ensure_online(session, kernel)
    client = hub_client(kernel)
    try:
        return await client.search(
            query, limit=limit, task=TASK_PIPELINES.get(task or "", task), sort=sort if sort in SORTS else "downloads"
        )
    except Exception as exc:  # ProviderError / HubError → the genai envelope
        raise _hub_error(exc) from None
    finally:
        await client.aclose()


async def details(session: AsyncSession, kernel: Any, source_id: str) -> dict[str, Any]:
    await ensure_online(session, kernel)
    client = hub_client(kernel)
    try:
        info = await client.model_info(source_id)
        files = client.files_of(info)
    except Exception as exc:
        raise _hub_error(exc) from None
    finally:
        await client.aclose()
    repo = info.get("id") or source_id
    return {
        "source_id": repo,
        "name": str(repo).rsplit("/", 1)[-1],
        "sha": info.get("sha"),
        "downloads": info.get("downloads"),
        "likes": info.get("likes"),
        "tags": [t for t in info.get("tags") or [] if isinstance(t, str)],
        "author": info.get("author"),
        "pipeline_tag": info.get("pipeline_tag"),
        "library_name": info.get("library_name"),
        "gated": info.get("gated"),
        "private": info.get("private"),
        "disabled": info.get("disabled"),
        "created_at": info.get("createdAt"),
        "last_modified": info.get("lastModified"),
        "used_storage": info.get("usedStorage"),
        "card_data": info.get("cardData") if isinstance(info.get("cardData"), dict) else None,
        "config": info.get("config") if isinstance(info.get("config"), dict) else None,
        "files": [
            {"path": f.path, "size": f.size, "file_type": f.path.rsplit(".", 1)[-1] if "." in f.path else None}
            for f in files
        ],
    }


def download_dto(row: GenaiDownload, job: Any | None) -> dict[str, Any]:
    status = job.status if job is not None else row.status
    return {
        "job_id": row.id,
        "provider": row.provider,
        "source_id": row.source_id,
        "target_dir": row.target_dir,
        "model_id": row.model_id,
        "status": status,
        "error_message": (job.error if job is not None else None) or row.error_message,
        "progress": job.progress if job is not None else None,
        "progress_message": job.progress_message if job is not None else None,
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
    }


def _patterns(value: Any, name: str) -> list[str]:
    if value in (None, ""):
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= 200 for p in value)
    ):
        raise GenaiError(400, f"invalid_{name}", f"{name} must be a list of at most {MAX_PATTERNS} globs")
    return value


async def start_download(session: AsyncSession, kernel: Any, user: User, body: dict[str, Any]) -> GenaiDownload:
    await ensure_online(session, kernel)
    source_id = str(body.get("source_id") or "").strip()
    try:
        check_repo_id(source_id)
    except HubError as exc:
        raise GenaiError(400, "invalid_source_id", str(exc)) from None
    allow = _patterns(body.get("allow_patterns"), "allow_patterns")
    ignore = _patterns(body.get("ignore_patterns"), "ignore_patterns")
    busy = await session.scalar(
        select(GenaiDownload.id)
        .join(Job, Job.id == GenaiDownload.job_id)
        .where(GenaiDownload.source_id == source_id, Job.status.in_(ACTIVE))
    )
    if busy:
        raise GenaiError(409, "download_in_progress", f"{source_id} is already being downloaded", {"job_id": busy})
    target = models_root(kernel) / repo_dir_name(source_id)
    # Every download is a platform model (the reference: id = owner--name), created now and
    # registered when the files are in place; downloading again refreshes the same model.
    model_id = str(body.get("model_id") or "").strip() or repo_dir_name(source_id)
    model = await session.get(GenaiModel, model_id) if len(model_id) <= 200 else None
    if model is None:
        from kiln.apps.genai.modelops.lifecycle import create_model

        model = await create_model(
            session,
            user,
            {
                "id": model_id,
                "name": str(body.get("name") or source_id.rsplit("/", 1)[-1])[:255],
                "backend": "local",
                "owner_type": "platform",
                "task_key": str(body.get("task_key") or "llm"),
                "category": body.get("category"),
                "provider": "huggingface",
                "source": "hf_import",
                "source_id": source_id,
                "local_path": str(target),
                "provider_model_id": body.get("provider_model_id"),
            },
        )
        model.lifecycle_state = "created"
    elif model.source_id != source_id or model.backend_kind != "local":
        raise GenaiError(409, "duplicate_model", f"Model {model_id!r} exists and is not a download of {source_id}")
    model.status = "downloading"
    row = GenaiDownload(
        source_id=source_id,
        target_dir=str(target),
        model_id=model_id,
        status="queued",
        request={
            "allow_patterns": allow,
            "ignore_patterns": ignore,
            "revision": str(body.get("revision") or "main")[:128],
        },
        created_by_user_id=user.id,
    )
    session.add(row)
    await session.flush()
    job = await kernel.jobs.create(session, DOWNLOAD_KIND, {"download_id": row.id}, owner_id=user.id, max_attempts=1)
    row.job_id = job.id
    await session.flush()
    return row


def selected(files: list[Any], allow: list[str], ignore: list[str]) -> list[Any]:
    return [
        f
        for f in files
        if (not allow or any(fnmatch.fnmatch(f.path, p) for p in allow))
        and not any(fnmatch.fnmatch(f.path, p) for p in ignore)
    ]


async def run_download(ctx: Any, download_id: str) -> dict[str, Any]:
    """The job: fetch the file list, stream every file into a staging directory, swap it in."""
    from kiln.core.db import utcnow

    kernel = ctx.kernel
    async with ctx.session() as session:
        row = await session.get(GenaiDownload, download_id)
        if row is None:
            raise RuntimeError("download record is gone")
        row.status, row.started_at = "running", utcnow()
        request, source_id, target = dict(row.request or {}), row.source_id, Path(row.target_dir)
        await session.commit()
    staging = target.with_name(f".{target.name}.partial-{download_id[:8]}")
    client = hub_client(kernel)
    outcome, error = "failed", None
    try:
        info = await client.model_info(source_id)
        files = selected(
            client.files_of(info), request.get("allow_patterns") or [], request.get("ignore_patterns") or []
        )
        if not files:
            raise HubError("no file matches the patterns")
        total = sum(f.size or 0 for f in files)
        limit = genai_settings(kernel).max_download_bytes
        if total > limit:
            raise HubError(f"model is {total} bytes, over the limit of {limit}")
        done = 0

        async def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            await ctx.progress(done / total if total else 0.5, f"{done} of {total} bytes")

        written = await client.download(
            source_id,
            staging,
            files,
            revision=request.get("revision") or "main",
            max_bytes=limit,
            on_bytes=on_bytes,
            should_stop=ctx.raise_if_cancelled,
        )
        await _swap(staging, target)
        outcome = "succeeded"
        return {"files": len(files), "bytes": written, "target_dir": str(target), "sha": info.get("sha")}
    except JobCancelled:
        outcome = "cancelled"
        raise
    except Exception as exc:
        error = getattr(exc, "message", None) or str(exc)
        raise RuntimeError(f"download of {source_id} failed: {error}"[:500]) from None
    finally:
        await client.aclose()
        if outcome != "succeeded":
            await _remove(staging)
        await _finish(ctx, download_id, outcome, error)


async def _swap(staging: Path, target: Path) -> None:
    import asyncio

    def swap() -> None:
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)

    await asyncio.to_thread(swap)


async def _remove(path: Path) -> None:
    import asyncio

    await asyncio.to_thread(shutil.rmtree, path, True)


async def _finish(ctx: Any, download_id: str, outcome: str, error: str | None) -> None:
    from kiln.core.db import utcnow

    async with ctx.session() as session:
        row = await session.get(GenaiDownload, download_id)
        if row is None:
            return
        row.status, row.finished_at, row.error_message = outcome, utcnow(), (error or None) and error[:500]
        if row.model_id and (model := await session.get(GenaiModel, row.model_id)) is not None:
            if outcome == "succeeded":
                model.status = "available"
                if model.lifecycle_state == "created":
                    model.lifecycle_state = "registered"
            else:
                model.status = "failed"
        await session.commit()
