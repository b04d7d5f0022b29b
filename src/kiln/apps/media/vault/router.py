"""Vault, upload, recents and the media files themselves (the status WebSocket: live.py)."""

from __future__ import annotations

import math
import uuid
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.requests import ClientDisconnect

from kiln.apps.media.deps import MediaSettingsDep, MediaUser
from kiln.apps.media.models import STATUSES, MediaItem
from kiln.apps.media.vault import live, multipart, service, uploads
from kiln.apps.media.vault.schemas import RecentItem, Recents, VaultItem, VaultPage
from kiln.core.deps import KernelDep, RootPathDep, SessionDep
from kiln.core.files import range_response
from kiln.core.params import Page

router = APIRouter(tags=["media: vault and upload"])
StatusName = Literal[STATUSES]  # type: ignore[valid-type]


def _meta(item: MediaItem) -> dict[str, object]:
    return {
        "filename": item.filename,
        "size": item.size_bytes,
        "width": item.width,
        "height": item.height,
        "mime": item.mime,
        "sha256": item.sha256,
    }


async def _vault_item(kernel: object, item: MediaItem, base: str) -> VaultItem:
    image, thumb = await service.media_urls(kernel, item, base)
    return VaultItem(
        id=item.id,
        filename=item.filename,
        status=item.status,
        timestamp=item.created_at.isoformat(),
        metadata=_meta(item),
        assigned_worker=item.worker_name,
        image_url=image,
        thumbnail_url=thumb,
        technical_metadata=item.technical_metadata,
        updated_at=item.updated_at.isoformat(),
        lat=item.lat,
        lng=item.lng,
        altitude=item.altitude,
        address=item.address,
        has_trash=item.has_trash,
        confidence=round(item.confidence * 100, 2) if item.confidence is not None else None,
    )


@router.get("/api/vault", response_model=VaultPage)
async def vault(
    user: MediaUser,
    kernel: KernelDep,
    session: SessionDep,
    base: RootPathDep,
    search: str | None = Query(default=None, max_length=255),
    status: StatusName | None = None,
    order_by: Literal["created_at", "filename", "status"] = "created_at",
    direction: Literal["asc", "desc"] = "desc",
    page: Page = 1,
    page_size: int = Query(default=20, ge=1, le=100),
) -> VaultPage:
    items, total = await service.list_vault(
        session,
        user.id,
        search=search,
        status=status,
        order_by=order_by,
        direction=direction,
        page=page,
        page_size=page_size,
    )
    return VaultPage(
        total=total,
        page=page,
        page_size=page_size,
        total_pages=math.ceil(total / page_size),
        items=[await _vault_item(kernel, i, base) for i in items],
    )


@router.delete("/api/vault/all")
async def delete_all(user: MediaUser, kernel: KernelDep, session: SessionDep) -> dict[str, object]:
    count = await service.delete_media(kernel, session, user.id)
    if not count:
        return {"detail": "No media found to delete", "deleted_count": 0}
    return {"detail": "All media deleted successfully", "deleted_count": count}


@router.delete("/api/vault/{media_id}")
async def delete_one(media_id: uuid.UUID, user: MediaUser, kernel: KernelDep, session: SessionDep) -> dict[str, str]:
    if not await service.delete_media(kernel, session, user.id, str(media_id)):
        raise HTTPException(404, "Media not found or you don't have permission to delete it")
    return {"detail": "Media deleted successfully"}


UPLOAD_FIELDS = ("files", "file")  # the contract's repeated field; "file" for single-file clients
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One part per image (repeat the field).",
                        }
                    },
                }
            }
        },
    }
}
_UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {"description": "At least one file was stored; `rejected` lists the others with their 4xx."},
    409: {"description": "Every file was a duplicate of media the caller already has."},
    413: {"description": "Every file was over the size limit (or over the per-request file count)."},
    415: {"description": "Not multipart/form-data, or no file was an accepted image."},
    422: {"description": "No file part in the body, or files rejected for different reasons."},
}


def _missing_files() -> JSONResponse:
    # FastAPI's own shape for a missing required body field, as `File(...)` used to answer.
    return JSONResponse(
        {"detail": [{"type": "missing", "loc": ["body", "files"], "msg": "Field required", "input": None}]},
        status_code=422,
    )


@router.post("/api/upload/files", status_code=201, openapi_extra=_UPLOAD_BODY, responses=_UPLOAD_RESPONSES)
async def upload_files(
    request: Request, user: MediaUser, kernel: KernelDep, session: SessionDep, cfg: MediaSettingsDep
) -> Response:
    """Multipart upload, streamed: each file goes to the blob store while it arrives.

    Per-file answers: 413 over `KILN_MEDIA_MAX_UPLOAD_BYTES` (or past the per-request count),
    415 not an accepted image, 409 a duplicate of the caller's media. Accepted files are kept.
    """
    if not request.headers.get("content-type"):
        return _missing_files()
    try:
        boundary = multipart.boundary_of(request.headers.get("content-type"))
    except multipart.MultipartError as exc:
        raise HTTPException(exc.status_code, exc.detail) from None
    # The user was looked up in this session: end that read, so no connection is held while the
    # first file streams (it can take minutes); the UPLOADED writes check one out again.
    await session.commit()
    outcome = uploads.UploadOutcome()
    seen = 0
    current = None
    try:
        async for part, chunks in multipart.file_parts(request.stream(), boundary, UPLOAD_FIELDS):
            current, seen = part.filename, seen + 1
            if seen > cfg.max_files_per_request:
                outcome.rejected.append(
                    uploads.Rejection(
                        part.filename, 413, f"Too many files: at most {cfg.max_files_per_request} per request"
                    )
                )
                continue  # its bytes are read and dropped, never stored
            await uploads.upload_one(kernel, session, user.id, part.filename, chunks, outcome)
            current = None
    except multipart.MultipartError as exc:
        if not seen:
            raise HTTPException(exc.status_code, exc.detail) from None
        # Files completed before the body broke are kept; the broken one is reported.
        outcome.rejected.append(uploads.Rejection(current or "(rest of the request)", exc.status_code, exc.detail))
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is listening; the half-written file was discarded
    if not seen:
        return _missing_files()
    rejected = [{"filename": r.filename, "status": r.status_code, "detail": r.detail} for r in outcome.rejected]
    if not outcome.accepted:
        codes = {r.status_code for r in outcome.rejected}
        code = codes.pop() if len(codes) == 1 else 422
        return JSONResponse({"detail": {"message": "No file was accepted", "rejected": rejected}}, status_code=code)
    n = len(outcome.accepted)
    body = {
        "message": f"{n} file{'s' if n != 1 else ''} uploaded successfully",
        "media_ids": [i.id for i in outcome.accepted],
        "rejected": rejected,
    }
    return JSONResponse(body, status_code=201)


@router.get("/api/upload/recents", response_model=Recents)
async def recent(user: MediaUser, kernel: KernelDep, session: SessionDep, base: RootPathDep) -> Recents:
    items = []
    for item in await service.recents(session, user.id):
        image, thumb = await service.media_urls(kernel, item, base)
        items.append(
            RecentItem(
                id=item.id,
                filename=item.filename,
                status=item.status,
                timestamp=item.created_at.isoformat(),
                image_url=image,
                thumbnail_url=thumb,
                metadata=_meta(item),
                address=item.address,
            )
        )
    return Recents(total=len(items), items=items)


async def _serve(
    request: Request,
    kernel: KernelDep,
    session: SessionDep,
    user_id: str,
    media_id: str,
    which: Literal["image", "thumbnail"],
) -> Response:
    item = await service.get_owned(session, user_id, media_id)
    if item is None:
        raise HTTPException(404, "Media not found")
    key = item.blob_key if which == "image" else item.thumbnail_key
    if key is None:
        raise HTTPException(404, "Thumbnail not ready yet")
    url = await kernel.blobs.presigned_url(key)
    if url:
        return RedirectResponse(url, status_code=307)
    media_type = (item.mime or "application/octet-stream") if which == "image" else "image/jpeg"
    name = item.filename if which == "image" else f"{item.filename.rsplit('.', 1)[0]}_thumbnail.jpg"
    try:
        return await range_response(request, (kernel.blobs, key), media_type, name, inline=True)
    except FileNotFoundError:
        raise HTTPException(404, "Media file is missing from storage") from None


@router.get("/api/media/{media_id}/image")
async def media_image(
    media_id: uuid.UUID, request: Request, user: MediaUser, kernel: KernelDep, session: SessionDep
) -> Response:
    return await _serve(request, kernel, session, user.id, str(media_id), "image")


@router.get("/api/media/{media_id}/thumbnail")
async def media_thumbnail(
    media_id: uuid.UUID, request: Request, user: MediaUser, kernel: KernelDep, session: SessionDep
) -> Response:
    return await _serve(request, kernel, session, user.id, str(media_id), "thumbnail")


router.include_router(live.router)
