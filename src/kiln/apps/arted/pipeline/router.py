"""Pipeline execution routes: execute (synchronous or `?async=true`), stage2, stage3-4."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from kiln.apps.arted.configs.registry import pick
from kiln.apps.arted.deps import CfgDep, ProvidersDep, RegistryDep, root, user_of
from kiln.apps.arted.errors import ArtedError, ArtedRoute
from kiln.apps.arted.models import FAILED
from kiln.apps.arted.pipeline import safety, service, stages
from kiln.apps.arted.pipeline.schemas import ExecuteRequest, Stage2Request, Stage34Request
from kiln.apps.arted.runs.views import execute_response
from kiln.core.auth.deps import OptionalUser
from kiln.core.deps import KernelDep, SessionDep
from kiln.providers.http import ProviderError, ProviderTimeout
from kiln.providers.llm import LLMClient

router = APIRouter(route_class=ArtedRoute)
AsyncFlag = Annotated[bool, Query(alias="async")]


def _failure(run: Any, *, stage_api: bool = False) -> ArtedError:
    error = run.error or {}
    extra: dict[str, Any] = {"run_id": run.id}
    if error.get("stage") == "pre_interception":
        metadata = {"stage": "pre_interception", "safety_codes": error.get("safety_codes", [])}
        if stage_api:
            extra.update(success=False, blocked_at_stage=1, safety_level=run.safety_level)
        message = safety.block_message(metadata["safety_codes"], (run.options or {}).get("user_language"))
        return ArtedError(
            403, message, status="error", details=error.get("message"), metadata=metadata, schema=run.config_id, **extra
        )
    if stage_api:
        extra["success"] = False
    return ArtedError(
        int(error.get("http_status", 500)),
        error.get("message") or "The run failed",
        status="upstream_error" if error.get("http_status") in (502, 504) else "error",
        details={"stage": error.get("stage")},
        **extra,
    )


async def _start(kernel: Any, session: Any, cfg: Any, run: Any, async_: bool, request: Request) -> Any:
    if async_:
        await service.start_and_wait(kernel, run.job_id, None)
        base = f"{root(request)}/api/pipeline/{run.id}"
        return JSONResponse(
            {"run_id": run.id, "status": "queued", "status_url": f"{base}/status", "entities_url": f"{base}/entities"},
            status_code=202,
        )
    job = await service.start_and_wait(kernel, run.job_id, cfg.sync_timeout_seconds)
    if job is None:
        raise ArtedError(
            504,
            "The run is still in progress; follow it on its status route",
            run_id=run.id,
            details={"status_url": f"{root(request)}/api/pipeline/{run.id}/status"},
        )
    return await service.finished_run(session, kernel, run, job)


@router.post("/api/schema/pipeline/execute")
async def execute(
    request: Request,
    body: ExecuteRequest,
    session: SessionDep,
    kernel: KernelDep,
    cfg: CfgDep,
    providers: ProvidersDep,
    reg: RegistryDep,
    user: OptionalUser,
    async_: AsyncFlag = False,
) -> Any:
    level = service.check_level(body.safety_level)
    seed = service.check_seed(body.seed)
    text = service.check_text(body.input_text, cfg)
    config = service.get_config(reg, body.schema_)
    outputs = service.choose_outputs(reg, config, body.output_config)
    service.check_configured(providers, outputs)
    options = {
        "user_language": body.user_language[:8],
        "context_prompt": service.clean(body.context_prompt) if body.context_prompt else None,
        "interception_result": service.clean(body.interception_result) if body.interception_result else None,
    }
    run = await service.create_run(
        session,
        kernel,
        run_id=service.valid_run_id(None),
        mode="full",
        config=config,
        outputs=outputs,
        text=text,
        level=level,
        execution_mode=body.execution_mode,
        seed=seed,
        user_id=user_of(user, body.user_id),
        session_id=service.clean(body.session_id or "default")[:128] or "default",
        options=options,
    )
    done = await _start(kernel, session, cfg, run, async_, request)
    if isinstance(done, JSONResponse):
        return done
    if done.status == FAILED:
        raise _failure(done)
    return execute_response(root(request), done, pick(config.name))


@router.post("/api/schema/pipeline/stage2")
async def stage2(body: Stage2Request, cfg: CfgDep, providers: ProvidersDep, reg: RegistryDep) -> dict[str, Any]:
    """Stages 1 and 2 only, answered inline; nothing is recorded (the frontend then calls stage3-4)."""
    level = service.check_level(body.safety_level)
    text = service.check_text(body.input_text, cfg)
    config = service.get_config(reg, body.schema_)
    outputs = service.choose_outputs(reg, config, body.output_config)
    service.check_configured(providers, [])
    llm = LLMClient.from_settings(providers)
    started = time.perf_counter()
    verdict = await safety.check(llm, reg.chunks["safety_guard"], text, level, model=cfg.safety_model)
    stage1 = time.perf_counter() - started
    if not verdict.safe:
        raise ArtedError(
            403,
            safety.block_message(verdict.codes, body.user_language),
            status="error",
            details=verdict.reason,
            success=False,
            blocked_at_stage=1,
            safety_level=level,
            metadata={"stage": "pre_interception", "safety_codes": verdict.codes},
        )
    optimization = stages.optimization_for(reg, outputs)
    try:
        step = await stages.intercept(
            llm,
            reg,
            config,
            text,
            lang=body.user_language,
            context_override=body.context_prompt,
            optimization=optimization,
        )
    except ProviderError as exc:
        raise ArtedError(
            504 if isinstance(exc, ProviderTimeout) else 502, exc.message, status="upstream_error", success=False
        ) from None
    total = time.perf_counter() - started
    return {
        "success": True,
        "stage2_result": step.text,
        "interception_result": step.text,
        "optimized_prompt": step.text,
        "run_id": service.valid_run_id(None),
        "model_used": step.model,
        "backend_used": "llm",
        "execution_time_ms": round(total * 1000, 1),
        "stage1_time_ms": round(stage1 * 1000, 1),
        "stage2_time_ms": round((total - stage1) * 1000, 1),
        "two_phase_execution": False,
        "optimization_applied": bool(optimization),
    }


@router.post("/api/schema/pipeline/stage3-4")
async def stage34(
    request: Request,
    body: Stage34Request,
    session: SessionDep,
    kernel: KernelDep,
    cfg: CfgDep,
    providers: ProvidersDep,
    reg: RegistryDep,
    user: OptionalUser,
    async_: AsyncFlag = False,
) -> Any:
    level = service.check_level(body.safety_level)
    seed = service.check_seed(body.seed)
    text = service.check_text(body.stage2_result, cfg, "stage2_result")
    output = service.get_config(reg, body.output_config)
    if output.kind != "output":
        raise ArtedError(
            400, f"{output.id!r} is not an output config", details={"valid_ids": [c.id for c in reg.outputs()]}
        )
    service.check_configured(providers, [output])
    run = await service.create_run(
        session,
        kernel,
        run_id=service.valid_run_id(body.run_id),
        mode="stage34",
        config=output,
        outputs=[output],
        text=text,
        level=level,
        execution_mode=body.execution_mode,
        seed=seed,
        user_id=user_of(user, body.user_id),
        session_id=service.clean(body.session_id or "default")[:128] or "default",
        options={"source_schema": body.schema_},
        client_id=body.run_id is not None,
    )
    done = await _start(kernel, session, cfg, run, async_, request)
    if isinstance(done, JSONResponse):
        return done
    if done.status == FAILED:
        raise _failure(done, stage_api=True)
    result = (execute_response(root(request), done, pick(output.name)).get("media_output")) or {}
    if result.get("status") == "blocked":
        raise ArtedError(
            403,
            safety.block_message(result.get("safety_codes", []), None),
            status="error",
            details=result.get("reason"),
            success=False,
            blocked_at_stage=3,
            safety_level=level,
            run_id=done.id,
            metadata={"stage": "pre_output", "safety_codes": result.get("safety_codes", [])},
        )
    media = {
        "url": result.get("url"),
        "filename": result.get("filename"),
        "run_id": done.id,
        "media_type": result.get("media_type"),
        "config": output.id,
        "seed": done.used_seed,
        "media_stored": bool(result.get("media_stored")),
    }
    return {
        "success": True,
        "media_output": media,
        "stage3_result": {"safe": True, "safety_level": level},
        "run_id": done.id,
        "used_seed": done.used_seed,
        "backend_info": done.backend_info,
        "execution_time_ms": round((done.total_execution_time or 0) * 1000, 1),
    }
