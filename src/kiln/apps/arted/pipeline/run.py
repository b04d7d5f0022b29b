"""One run of the four stages, inside the `arted.run` job. Everything it learns goes to the recorder.

1. safety on the user's original text (words, then the LLM guard; fails closed);
2. interception of the user's text (never a safety model's rewrite) — skipped for output configs,
   `stage34` runs and a frontend-provided `interception_result`;
3. per output config (`outputs.py`): translation to English, then pre-output safety for the level on the
   translation (and on the original, for the word lists); a block stops that output;
4. ComfyUI with the requested (or drawn) seed; the file comes from that prompt's history.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from kiln.apps.arted.config import ArtedSettings
from kiln.apps.arted.configs.registry import Registry, registry
from kiln.apps.arted.models import COMPLETED, FAILED, Run
from kiln.apps.arted.pipeline import safety, stages
from kiln.apps.arted.pipeline.outputs import produce
from kiln.apps.arted.pipeline.recorder import Recorder, opening
from kiln.providers.comfyui import ComfyUIClient
from kiln.providers.config import ProviderSettings
from kiln.providers.http import ProviderError, ProviderTimeout
from kiln.providers.llm import LLMClient

# What a run needs of its row; the job's payload carries them (service.create_run), so a run
# starts without reading its row back. A payload without them (a job queued by an older version)
# is read from the row.
RUN_FIELDS = (
    "id",
    "mode",
    "config_id",
    "user_id",
    "session_id",
    "safety_level",
    "execution_mode",
    "input_text",
    "requested_seed",
    "options",
)


async def execute(
    kernel: Any,
    run_id: str,
    fields: dict[str, Any] | None = None,
    opened: dict[str, Any] | None = None,
    *,
    fresh: bool = True,
) -> dict[str, Any]:
    """Run the stages of `run_id` from the lists its row got at creation (`opened`); `fresh` is
    False for a retried job (what it stored is removed, the lists start over)."""
    if fields is None:
        columns = [Run.__table__.c[name] for name in RUN_FIELDS]
        async with kernel.db.engine.connect() as conn:
            row = (await conn.execute(select(*columns).where(Run.__table__.c.id == run_id))).mappings().first()
        if row is None:
            return {"outcome": "missing"}
        fields = dict(row)
    run = SimpleNamespace(**fields)
    cfg = kernel.surface_settings(ArtedSettings)
    providers = kernel.surface_settings(ProviderSettings)
    reg = registry(cfg.config_dir)
    rec = Recorder(kernel, run_id, opened if opened is not None and fresh else opening(fields))
    await rec.start(fresh=fresh)
    try:
        llm = LLMClient.from_settings(providers)
        comfy = ComfyUIClient.from_settings(providers) if run.options.get("outputs") else None
        outcome = await _stages(rec, run, reg, cfg, llm, comfy)
    except ProviderError as exc:
        await _fail(rec, run, "configuration" if not isinstance(exc, ProviderTimeout) else "timeout", exc)
        outcome = {"outcome": "failed"}
    # the run's closing values ride with the job's end, so the waiting route need not read the row
    return {**outcome, "run": rec.closing}


async def _fail(rec: Recorder, run: Any, stage: str, exc: ProviderError, **values: Any) -> None:
    status = 504 if isinstance(exc, ProviderTimeout) else 502
    error = {"stage": stage, "error_type": type(exc).__name__, "message": str(exc)[:500], "http_status": status}
    item = {
        "stage": rec.stage,
        "item_type": "pipeline_error",
        "media_type": "metadata",
        "meta": {
            "error_type": error["error_type"],
            "error_stage": stage,
            "error_message": error["message"],
            "recoverable": False,
        },
    }
    await rec.record("error", error, items=[item])
    await rec.finish(FAILED, [], error=error, **values)


async def _stages(
    rec: Recorder, run: Any, reg: Registry, cfg: ArtedSettings, llm: LLMClient, comfy: ComfyUIClient | None
) -> dict[str, Any]:
    level, options = run.safety_level, run.options
    config = reg.configs[run.config_id]
    guard_chunk = reg.chunks["safety_guard"]
    backend_info: list[dict[str, Any]] = []
    text = run.input_text  # recorded with the run's row (recorder.opening)
    # ---- stage 1: safety on the user's own text
    verdict = await safety.check(llm, guard_chunk, text, level, model=cfg.safety_model)
    backend_info.append(
        {
            "stage": 1,
            "backend": "word_filter" if verdict.method == "word_filter" else stages.backend_of(llm),
            "model": verdict.model,
        }
    )
    items = [
        {
            "stage": 1,
            "item_type": "stage1_safety_check",
            "media_type": "metadata",
            "model_used": verdict.model,
            "meta": {
                "safe": verdict.safe,
                "method": verdict.method,
                "found_terms": verdict.found_terms,
                "codes": verdict.codes,
            },
        }
    ]
    if not verdict.safe:
        items.append(
            {
                "stage": 1,
                "item_type": "stage1_blocked",
                "media_type": "metadata",
                "meta": {"blocked_reason": verdict.reason, "blocked_codes": verdict.codes},
            }
        )
    outputs = [reg.configs[o] for o in options.get("outputs", []) if o in reg.configs]
    intercepting = run.mode == "full" and config.kind == "interception" and not options.get("interception_result")
    after = (2, "interception") if intercepting else (3, "translation") if outputs else None
    after = after if verdict.safe else None
    await rec.record(
        "safety", verdict.record(level), items=items, run_values={"backend_info": backend_info}, then=after
    )
    if not verdict.safe:
        error = {
            "stage": "pre_interception",
            "error_type": "safety_blocked",
            "message": verdict.reason,
            "safety_codes": verdict.codes,
            "http_status": 403,
        }
        await rec.finish(
            FAILED,
            [
                {
                    "stage": 1,
                    "item_type": "pipeline_error",
                    "media_type": "metadata",
                    "meta": {"error_type": "safety_blocked", "error_stage": 1},
                }
            ],
            error=error,
        )
        return {"outcome": "blocked"}
    # ---- stage 2: interception of the user's text
    prompt = text
    next_state = (3, "translation") if outputs else None
    if intercepting:
        optimization = stages.optimization_for(reg, outputs)
        try:
            step = await stages.intercept(
                llm,
                reg,
                config,
                text,
                lang=options.get("user_language", "de"),
                context_override=options.get("context_prompt"),
                optimization=optimization,
            )
        except ProviderError as exc:
            await _fail(rec, run, "interception", exc, backend_info=backend_info)
            return {"outcome": "failed"}
        prompt = step.text
        backend_info.append({"stage": 2, "backend": stages.backend_of(llm), "model": step.model})
        await rec.record(
            "interception",
            prompt,
            meta={"config": config.id, "model_used": step.model},
            items=[
                {
                    "stage": 2,
                    "item_type": "interception_final",
                    "content": prompt,
                    "model_used": step.model,
                    "backend_used": stages.backend_of(llm),
                    "config_used": config.id,
                    "execution_time": round(step.seconds, 4),
                }
            ],
            run_values={"final_output": prompt, "backend_info": backend_info},
            then=next_state,
        )
    elif options.get("interception_result"):
        prompt = str(options["interception_result"])
        await rec.record(
            "interception",
            prompt,
            meta={"config": config.id, "source": "client"},
            items=[{"stage": 2, "item_type": "interception_final", "content": prompt, "meta": {"source": "client"}}],
            run_values={"final_output": prompt},
            then=next_state,
        )
    else:
        rec.pend(final_output=prompt)
    # ---- stages 3 and 4, per output config
    results = []
    used_seed = None
    for index, output in enumerate(outputs, start=1):
        result, seed = await produce(
            rec, run, reg, cfg, llm, comfy, output, prompt, backend_info, index, last=index == len(outputs)
        )
        results.append(result)
        used_seed = seed if seed is not None else used_seed
    errors = [r for r in results if r["status"] == "error"]
    failed = bool(results) and len(errors) == len(results)
    error = None
    if failed:
        error = {
            "stage": "media_generation",
            "error_type": "upstream",
            "message": errors[0]["error"],
            "http_status": errors[0].get("http_status", 502),
        }
    await rec.finish(
        FAILED if failed else COMPLETED,
        [
            {
                "stage": 5,
                "item_type": "pipeline_complete",
                "media_type": "metadata",
                "meta": {
                    "outputs_generated": sum(r["status"] == "success" for r in results),
                    "stages_completed": sorted({b["stage"] for b in backend_info}),
                },
            }
        ],
        outputs=results,
        backend_info=backend_info,
        used_seed=used_seed,
        error=error,
    )
    return {"outcome": "failed" if failed else "completed"}
