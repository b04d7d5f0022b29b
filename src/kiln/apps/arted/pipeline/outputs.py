"""Stages 3 and 4 of a run for one output config: translation to English, pre-output safety for
the level (a block stops that output: no ComfyUI call), then ComfyUI with the requested (or
drawn) seed, the file taken from that prompt's history and stored by the recorder."""

from __future__ import annotations

import time
from typing import Any

from kiln.apps.arted.config import ArtedSettings
from kiln.apps.arted.configs.registry import Config, Registry
from kiln.apps.arted.pipeline import safety, stages
from kiln.apps.arted.pipeline.recorder import MEDIA_KIND, Recorder
from kiln.providers.comfyui import ComfyUIClient
from kiln.providers.http import ProviderError, ProviderTimeout
from kiln.providers.llm import LLMClient


async def produce(
    rec: Recorder,
    run: Any,
    reg: Registry,
    cfg: ArtedSettings,
    llm: LLMClient,
    comfy: ComfyUIClient | None,
    output: Config,
    prompt: str,
    backend_info: list[dict[str, Any]],
    index: int,
    *,
    last: bool,
) -> tuple[dict[str, Any], int | None]:
    """Stages 3 and 4 for `output`: its entry in the run's `outputs`, and the seed used."""
    level = run.safety_level
    media = output.media_type
    base = {"config": output.id, "media_type": media, "safety_level": level}
    if (rec.stage, rec.step) != (3, "translation"):
        await rec.set_state(3, "translation")
    try:
        step = await stages.translate(llm, reg, prompt, cfg.translation_model)
    except ProviderError as exc:  # without a translation there is nothing safe to send on
        verdict = safety.Verdict(
            False, "llm_unavailable", f"translation unavailable: {exc.message}", ["guard_unavailable"]
        )
        translated = None
    else:
        translated = step.text
        backend_info.append({"stage": 3, "backend": stages.backend_of(llm), "model": step.model, "step": "translation"})
        await rec.record(
            "translation",
            translated,
            meta={"model_used": step.model, "config": output.id},
            items=[
                {
                    "stage": 3,
                    "item_type": "translation_result",
                    "content": translated,
                    "model_used": step.model,
                    "backend_used": stages.backend_of(llm),
                    "loop_iteration": index,
                    "meta": {"from_lang": "auto", "to_lang": "en"},
                }
            ],
            then=(3, "pre_output_safety"),
        )
        verdict = await safety.check(
            llm,
            reg.chunks["safety_guard"],
            translated,
            level,
            model=cfg.safety_model,
            extra_texts=(prompt, run.input_text),
        )
        backend_info.append(
            {
                "stage": 3,
                "backend": "word_filter" if verdict.method == "word_filter" else stages.backend_of(llm),
                "model": verdict.model,
                "step": "pre_output_safety",
            }
        )
    items = [
        {
            "stage": 3,
            "item_type": "stage3_safety_check",
            "media_type": "metadata",
            "model_used": verdict.model,
            "loop_iteration": index,
            "meta": {"safe": verdict.safe, "method": verdict.method, "safety_level": level, "codes": verdict.codes},
        }
    ]
    if not verdict.safe:
        items.append(
            {
                "stage": 3,
                "item_type": "stage3_blocked",
                "media_type": "metadata",
                "loop_iteration": index,
                "meta": {"blocked_reason": verdict.reason, "blocked_codes": verdict.codes},
            }
        )
    go = verdict.safe and translated is not None and comfy is not None
    await rec.record(
        "safety_pre_output",
        {**verdict.record(level), "media_type": media},
        items=items,
        run_values={"backend_info": backend_info},
        then=(4, "media_generation") if go else None,
    )
    if not go or comfy is None or translated is None:
        return {**base, "status": "blocked", "reason": verdict.reason, "safety_codes": verdict.codes}, None
    # ---- stage 4
    chunk = reg.output_chunk(output)
    seed = stages.choose_seed(run.requested_seed, output)
    graph = stages.fill_workflow(chunk, stages.workflow_values(output, translated, seed, run.id))
    started = time.perf_counter()
    try:
        made = await stages.generate(comfy, chunk, graph, max_bytes=cfg.max_media_bytes)
    except ProviderError as exc:
        status = 504 if isinstance(exc, ProviderTimeout) else 502
        return {**base, "status": "error", "error": str(exc)[:500], "http_status": status}, seed
    model = chunk.meta.get("model")
    backend_info.append({"stage": 4, "backend": "comfyui", "model": model})
    kind = MEDIA_KIND.get(media, media)
    meta = {
        "config": output.id,
        "backend": "comfyui",
        "seed": seed,
        "prompt_id": made.prompt_id,
        "source_filename": made.filename,
        "model": model,
    }
    meta.update(_media_facts(made.data))
    view = await rec.record(
        f"output_{kind}",
        made.data,
        meta=meta,
        items=[
            {
                "stage": 4,
                "item_type": f"output_{kind}",
                "media_type": kind,
                "config_used": output.id,
                "model_used": model,
                "backend_used": "comfyui",
                "execution_time": round(made.seconds, 4),
                "loop_iteration": index,
                "file_path": None,
                "meta": {"seed": seed, "prompt_id": made.prompt_id},
            }
        ],
        run_values={"used_seed": seed, "backend_info": backend_info},
        defer=last,
    )
    return {
        **base,
        "status": "success",
        "run_id": run.id,
        "output": run.id,
        "media_stored": True,
        "execution_time": round(time.perf_counter() - started, 4),
        "filename": view["filename"],
        "entity_sequence": view["sequence"],
        "mime_type": view["mime_type"],
        "kind": kind,
        "metadata": {
            "seed": seed,
            "prompt_id": made.prompt_id,
            "model": model,
            **{k: v for k, v in meta.items() if k in ("width", "height", "format")},
        },
    }, seed


def _media_facts(data: bytes) -> dict[str, Any]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        # A PNG states its size in its first chunk; opening it with Pillow cost ~0.2 ms per run.
        return {
            "width": int.from_bytes(data[16:20], "big"),
            "height": int.from_bytes(data[20:24], "big"),
            "format": "png",
        }
    if not data.startswith((b"\xff\xd8\xff", b"RIFF", b"GIF8")):
        return {}
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return {"width": image.width, "height": image.height, "format": (image.format or "").lower()}
    except Exception:  # not an image (a WAV is RIFF too)
        return {}
