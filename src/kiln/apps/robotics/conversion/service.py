"""Conversion runs: validate a request, snapshot its config, queue a `robotics.convert` job.

Only the legacy mapping mode needs indexed assets (its mapping comes from indexed topics);
inline specs and saved configs run on any registered recording. The run's status is its
engine job's status, so the two can never disagree.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.robotics.authoring.configs import find_config, latest_revision, migrate_on_load, parse_document
from kiln.apps.robotics.common import Conflict, NotFound, RoboticsError, spec_refusal
from kiln.apps.robotics.config import Execution, RoboticsSettings
from kiln.apps.robotics.jobs_service import CONVERT_KIND, wait_for_jobs
from kiln.apps.robotics.models import INDEXED, Asset, AssetMetadata, ConversionRun, JobAsset, OutputArtifact
from kiln.apps.robotics.schemas import ConversionCreateRequest
from kiln.apps.robotics.spec import models as spec_models
from kiln.apps.robotics.spec.migrate import SpecError, auto_mapping, build_legacy_spec, representation_policy
from kiln.apps.robotics.spec.models import ConversionSpec
from kiln.apps.robotics.views import conversion_summary, job_view
from kiln.core.db import new_id, utcnow
from kiln.core.jobs.models import CANCELLED, FAILED, Job
from kiln.core.jobs.service import JobService
from kiln.core.kernel import Kernel


def stored_policy(spec: ConversionSpec, requested: str | None) -> dict[str, Any]:
    """The policy as stored in run/job configs (contract key `effective_image_payload_contract`)."""
    policy = representation_policy(spec.output, requested)
    policy["effective_image_payload_contract"] = policy.pop("image_payload_contract")
    return policy


def _raw_output(document: Any) -> Any:
    """The `output` block of a spec (bare or in its envelope) exactly as it was written."""
    if not isinstance(document, dict):
        return None
    inner = document.get("spec") if isinstance(document.get("spec"), dict) else document
    return inner.get("output")


def _echo_output(given: Any, spec: ConversionSpec) -> dict[str, Any]:
    """`config.output` echoes the request's output block; without one, the format used."""
    if isinstance(given, dict):
        return dict(given)
    return {"format": spec.output.format, "compression": spec.output.compression}


async def _assets(session: AsyncSession, ids: list[str]) -> list[Asset]:
    rows = {a.id: a for a in await session.scalars(select(Asset).where(Asset.id.in_(ids)))}
    for i in ids:
        if i not in rows:
            raise RoboticsError(f"asset not found: {i}")
    return [rows[i] for i in ids]


async def _legacy(
    session: AsyncSession, req: ConversionCreateRequest, assets: list[Asset]
) -> tuple[ConversionSpec, dict[str, Any], str | None]:
    for a in assets:
        if a.indexing_status != INDEXED:
            raise RoboticsError(f"asset must be indexed before conversion: {a.file_name}")
    metas = {
        m.asset_id: m
        for m in await session.scalars(select(AssetMetadata).where(AssetMetadata.asset_id.in_([a.id for a in assets])))
    }
    first_topics = [t["name"] for t in (metas[assets[0].id].topics if assets[0].id in metas else [])]
    if not first_topics:
        raise RoboticsError(f"asset has no indexed topics to convert: {assets[0].file_name}")
    known = {t["name"] for m in metas.values() for t in (m.topics or [])}
    if req.mapping is not None:
        unknown = sorted({t for ts in req.mapping.values() for t in ts} - known)
        if unknown:
            raise RoboticsError(f"mapping topics not found in the indexed assets: {', '.join(unknown)}")
        mapping, mode = req.mapping, "custom"
    else:
        mapping, mode = auto_mapping(first_topics), "auto"
    try:
        spec = build_legacy_spec(
            mapping,
            output=req.output,
            resample=req.resample,
            write_manifest=True if req.write_manifest is None else req.write_manifest,
        )
    except SpecError as exc:
        if "image_payload_contract" in str(exc):
            raise RoboticsError("image payload contract can only be customized for tfrecord output") from None
        raise spec_refusal(exc) from None
    snapshot = {
        "mapping": mapping,
        "mapping_mode": mode,
        "output": _echo_output(req.output, spec),
        "resample": spec.resample.model_dump(mode="json") if spec.resample else None,
        "write_manifest": spec.output.write_manifest,
    }
    return spec, snapshot, (req.output or {}).get("image_payload_contract")


async def create_conversion(
    session: AsyncSession,
    jobs: JobService,
    home: Path,
    req: ConversionCreateRequest,
    execution: Execution = "background",
) -> tuple[dict[str, Any], str]:
    """Validate, store the run and its queued job; returns (detail, job id to kick after commit)."""
    assets = await _assets(session, req.asset_ids)
    extra: dict[str, Any] = {}
    if req.mode == "saved-config":
        try:
            cfg = await find_config(session, req.saved_config_id or "")
        except NotFound as exc:
            raise RoboticsError(str(exc)) from None
        await migrate_on_load(session, cfg)
        if cfg.invalid_reason:
            raise RoboticsError(f"saved conversion config is invalid: {cfg.invalid_reason}")
        doc, _ = parse_document(cfg.spec_document)
        spec, requested = doc.spec, None
        rev = await latest_revision(session, cfg)
        cfg.last_opened_at = utcnow()
        extra = {
            "saved_config_id": cfg.id,
            "saved_config_revision_number": rev.revision_number if rev else None,
            "saved_config_spec_document_version": cfg.spec_document_version,
        }
        snapshot = {
            "mapping": spec.mapping,
            "mapping_mode": "saved-config",
            "output": _echo_output(_raw_output(cfg.spec_document), spec),
        }
        revision_id = rev.id if rev else None
    elif req.mode == "spec":
        doc, _ = parse_document(req.spec)
        spec, revision_id = doc.spec, None
        raw_out = _raw_output(req.spec)
        requested = raw_out.get("image_payload_contract") if isinstance(raw_out, dict) else None
        snapshot = {"mapping": spec.mapping, "mapping_mode": "spec", "output": _echo_output(raw_out, spec)}
    else:
        spec, snapshot, requested = await _legacy(session, req, assets)
        revision_id = None
    snapshot.setdefault("resample", spec.resample.model_dump(mode="json") if spec.resample else None)
    snapshot.setdefault("write_manifest", spec.output.write_manifest)
    policy = stored_policy(spec, requested)
    config = {**snapshot, "spec": spec.model_dump(mode="json", by_alias=True), "representation_policy": policy, **extra}
    run_id = new_id()
    out_dir = (home / "robotics" / "outputs" / run_id).resolve()
    ids = [a.id for a in assets]
    job = await jobs.create(
        session,
        CONVERT_KIND,
        {
            "run_id": run_id,
            "target_asset_ids": ids,
            "config": {"execution": execution, **config, "output_path": str(out_dir)},
        },
    )
    for pos, a in enumerate(assets):
        session.add(JobAsset(job_id=job.id, asset_id=a.id, position=pos))
    now = utcnow()
    run = ConversionRun(
        id=run_id,
        job_id=job.id,
        asset_ids=ids,
        asset_paths=[a.file_path for a in assets],
        saved_config_id=extra.get("saved_config_id"),
        saved_config_revision_id=revision_id,
        config=config,
        output_dir=str(out_dir),
        output_paths=[],
        created_at=now,
        updated_at=now,
    )
    session.add(run)
    await session.commit()
    return {**conversion_summary(run, job), "output_files": [], "job": job_view(job)}, job.id


async def start_conversion(
    session: AsyncSession, kernel: Kernel, cfg: RoboticsSettings, req: ConversionCreateRequest
) -> dict[str, Any]:
    """Create a run and start its job. Background: answer it queued. Inline: answer once the
    job is done; a failure is a 422 with the job's error (the failed run and job stay)."""
    detail, job_id = await create_conversion(session, kernel.jobs, kernel.settings.home, req, cfg.execution)
    await kernel.jobs.kick(job_id)
    if cfg.execution == "background":
        return detail
    job = (await wait_for_jobs(kernel, [job_id], cfg.inline_timeout_seconds)).get(job_id)
    if job is not None and job.status == FAILED:
        raise RoboticsError(job.error or "conversion failed")
    if job is not None and job.status == CANCELLED:
        raise Conflict(f"conversion was cancelled: {detail['id']}")
    session.expire_all()
    return await conversion_detail(session, detail["id"])  # still running if the wait ran out


async def conversion_detail(session: AsyncSession, run_id: str) -> dict[str, Any]:
    run = await session.get(ConversionRun, run_id)
    if run is None:
        raise NotFound(f"conversion not found: {run_id}")
    job = await session.get(Job, run.job_id, populate_existing=True) if run.job_id else None
    files = list(
        await session.scalars(
            select(OutputArtifact)
            .where(OutputArtifact.conversion_run_id == run.id)
            .order_by(OutputArtifact.relative_path)
        )
    )
    # the contract's `output_files` is a list of paths (list[str]); the records are at /outputs
    return {
        **conversion_summary(run, job),
        "output_files": [o.output_path for o in files],
        "job": job_view(job) if job else None,
    }


def _truthy(value: str | None, key: str) -> bool | None:
    if value is None or not value.strip():
        return None
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise RoboticsError(f"{key} must be true or false, got {value!r}")


async def list_conversions(session: AsyncSession, contract: str | None, legacy: str | None) -> list[dict[str, Any]]:
    want_legacy = _truthy(legacy, "legacy_compatible")
    contract = (contract or "").strip().lower() or None
    if contract and contract not in spec_models.IMAGE_CONTRACTS:
        raise RoboticsError(f"image_payload_contract must be one of {', '.join(spec_models.IMAGE_CONTRACTS)}")
    rows = (
        await session.execute(
            select(ConversionRun, Job)
            .outerjoin(Job, Job.id == ConversionRun.job_id)
            .order_by(ConversionRun.created_at.desc(), ConversionRun.id.desc())
        )
    ).all()
    out = []
    for run, job in rows:
        policy = (run.config or {}).get("representation_policy")
        if contract or want_legacy is not None:
            if not policy:
                continue
            if contract and policy.get("effective_image_payload_contract") != contract:
                continue
            is_legacy = "legacy_list_image_payload" in (policy.get("compatibility_markers") or [])
            if want_legacy is not None and is_legacy != want_legacy:
                continue
        out.append(conversion_summary(run, job))
    return out


def capabilities() -> dict[str, Any]:
    """What the authoring API and output writers support, read off the spec models."""
    args = typing.get_args
    m = spec_models
    return {
        "authoring_api_version": 1,
        "hephaes": {
            "spec_version": m.SPEC_VERSION,
            "supports_spec_documents": True,
            "supports_inspection": True,
            "supports_draft_generation": True,
            "supports_preview": True,
            "supports_migration": True,
            "row_strategies": ["trigger", "per-message", "resample"],
            "authoring_row_strategies": ["trigger", "per-message", "resample"],
            "planned_row_strategies": [],
            "feature_source_kinds": ["path", "constant", "metadata", "concat", "stack"],
            "authoring_feature_source_kinds": ["path", "constant", "metadata", "concat", "stack"],
            "planned_feature_source_kinds": [],
            "feature_dtypes": list(args(m.Dtype)),
            "sync_policies": list(args(m.SyncPolicy)),
            "missing_data_policies": list(args(m.MissingPolicy)),
            "decode_failure_policies": list(args(m.DecodeFailure)),
            "resample_strategies": ["interpolate", "downsample"],
            "output_formats": ["parquet", "tfrecord"],
            "parquet_compressions": list(m.PARQUET_COMPRESSIONS),
            "tfrecord_compressions": list(m.TFRECORD_COMPRESSIONS),
            "tfrecord_payload_encodings": ["typed_features"],
            "tfrecord_null_encodings": ["presence_flag"],
            "transform_kinds": list(args(m.TransformKind)),
            "input_formats": ["bag", "mcap", "db3", "rosbag2 directory"],
        },
        "output_contract": {
            "policy_version": 1,
            "default_image_payload_contract": "bytes_v2",
            "supported_image_payload_contracts": list(m.IMAGE_CONTRACTS),
            "legacy_compatibility_marker": "legacy_list_image_payload",
        },
        "persistence": {
            "mode": "sqlite-json",
            "supports_saved_configs": True,
            "supports_saved_config_revisions": True,
            "supports_draft_revisions": True,
            "supports_preview_snapshots": True,
            "supports_migration_on_load": True,
            "supports_execute_from_saved_config": True,
            "spec_document_version": m.SPEC_VERSION,
        },
    }
