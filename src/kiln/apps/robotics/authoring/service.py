"""Conversion authoring: inspect a recording, draft a spec (persisted as a draft), preview rows.

The domain work reads files, so it runs in a thread; answers are made JSON-safe (bytes as
the `{"__bytes__": true, ...}` wrapper, numpy as lists) before they are stored or sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.assets.registration import readable_path
from kiln.apps.robotics.assets.service import get_asset
from kiln.apps.robotics.authoring.drafts import create_draft
from kiln.apps.robotics.authoring.inspection import inspect_recording
from kiln.apps.robotics.common import RoboticsError, spec_refusal
from kiln.apps.robotics.conversion.preview import preview as run_preview
from kiln.apps.robotics.conversion.service import stored_policy
from kiln.apps.robotics.conversion.values import bytes_wrapper
from kiln.apps.robotics.reading.reader import RecordingError
from kiln.apps.robotics.schemas import DraftRequest, InspectRequest, PreviewRequest
from kiln.apps.robotics.spec.draft import build_draft
from kiln.apps.robotics.spec.migrate import (
    SpecError,
    format_validation_error,
    load_spec_document,
    validation_details,
)
from kiln.apps.robotics.spec.models import OutputSpec
from kiln.apps.robotics.views import policy_for_response

log = logging.getLogger(__name__)
T = TypeVar("T")


def to_jsonable(value: Any) -> Any:
    """JSON-safe copy: numpy -> python, bytes -> wrapper, NaN/inf -> null; keys are kept as they are."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return bytes_wrapper(value.tobytes()) if value.dtype == np.uint8 else to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes_wrapper(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


async def _domain(what: str, asset_id: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """Run a domain call in a thread; user-facing errors become 422 with their own message."""
    try:
        return await asyncio.to_thread(fn, *args, **kw)
    except ValidationError as exc:
        raise RoboticsError(format_validation_error(exc), detail=validation_details(exc, ("body",))) from None
    except SpecError as exc:
        raise spec_refusal(exc) from None
    except (ValueError, RecordingError) as exc:
        raise RoboticsError(str(exc)) from None
    except OSError as exc:
        raise RoboticsError(f"{what} failed for asset {asset_id}: {exc.strerror or exc}") from None
    except Exception:
        log.exception("%s failed for asset %s", what, asset_id)
        raise RoboticsError(f"{what} failed for asset: {asset_id}") from None


def _default_policy() -> dict[str, Any] | None:
    return policy_for_response(stored_policy_for(OutputSpec()))


def stored_policy_for(output: OutputSpec) -> dict[str, Any]:
    from kiln.apps.robotics.spec.models import ConversionSpec

    return stored_policy(ConversionSpec(output=output), None)


def _inspect_args(req: InspectRequest) -> dict[str, Any]:
    return {
        "topics": req.topics or None,
        "sample_n": req.sample_n,
        "max_depth": req.max_depth,
        "max_sequence_items": req.max_sequence_items,
        "on_failure": req.on_failure,
        "topic_type_hints": req.topic_type_hints or None,
    }


def _inspect_echo(req: InspectRequest) -> dict[str, Any]:
    return {
        "asset_id": req.asset_id,
        "topics": req.topics,
        "sample_n": req.sample_n,
        "max_depth": req.max_depth,
        "max_sequence_items": req.max_sequence_items,
        "on_failure": req.on_failure,
        "topic_type_hints": req.topic_type_hints,
    }


async def inspect(session: AsyncSession, req: InspectRequest, roots: list[Path]) -> dict[str, Any]:
    asset = await get_asset(session, req.asset_id)
    result = await _domain(
        "inspection", asset.id, inspect_recording, readable_path(asset.file_path, roots), **_inspect_args(req)
    )
    return {
        "asset_id": asset.id,
        "request": _inspect_echo(req),
        "inspection": to_jsonable(result.to_dict()),
        "representation_policy": _default_policy(),
    }


async def draft(session: AsyncSession, req: DraftRequest, roots: list[Path]) -> dict[str, Any]:
    asset = await get_asset(session, req.asset_id)
    path = readable_path(asset.file_path, roots)
    inspection = await _domain("draft generation", asset.id, inspect_recording, path, **_inspect_args(req))
    draft_req = req.draft_request.model_dump()
    result = await _domain("draft generation", asset.id, build_draft, inspection, draft_req, path)
    body = to_jsonable(result.to_dict())
    inspection_body = to_jsonable(inspection.to_dict())
    document = {"spec_version": 2, "spec": body["spec"], "metadata": {}}
    preview_req = (
        {"sample_n": req.draft_request.preview_rows, "topic_type_hints": req.topic_type_hints}
        if req.draft_request.include_preview
        else None
    )
    rev = await create_draft(
        session,
        asset_id=asset.id,
        inspection_request=_inspect_echo(req),
        inspection=inspection_body,
        draft_request=draft_req,
        draft_result=body,
        preview_request=preview_req,
        preview=body.get("preview"),
        spec_document=document,
    )
    policy = policy_for_response(stored_policy(result.spec, None))
    return {
        "asset_id": asset.id,
        "request": {**_inspect_echo(req), "draft_request": draft_req},
        "inspection": inspection_body,
        "draft": body,
        "draft_revision_id": rev.id,
        "representation_policy": policy,
    }


async def preview(session: AsyncSession, req: PreviewRequest, roots: list[Path]) -> dict[str, Any]:
    asset = await get_asset(session, req.asset_id)
    path = readable_path(asset.file_path, roots)
    try:
        doc, _ = load_spec_document(req.spec)
    except SpecError as exc:
        raise spec_refusal(exc) from None
    result = await _domain(
        "preview generation",
        asset.id,
        run_preview,
        path,
        doc.spec,
        req.sample_n,
        topic_type_hints=req.topic_type_hints or None,
    )
    requested = doc.spec.output.image_payload_contract if doc.spec.output.format == "tfrecord" else None
    return {
        "asset_id": asset.id,
        "request": {
            "asset_id": asset.id,
            "spec": doc.spec.model_dump(mode="json", by_alias=True),
            "sample_n": req.sample_n,
            "topic_type_hints": req.topic_type_hints,
        },
        "preview": to_jsonable(result.to_dict()),
        "representation_policy": policy_for_response(stored_policy(doc.spec, requested)),
    }
