"""The work of stages 2-4: interception and translation on the LLM, media on ComfyUI.

Prompts are chat messages (system = task + context, user = the user's text), with the config's
sampling parameters passed through. Stage 2 is one streamed call that also carries the output
chunk's optimisation instruction (the contract's single interception + optimisation call).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kiln.apps.arted.configs.registry import Chunk, Config, Registry, pick
from kiln.providers.comfyui import ComfyUIClient, output_files
from kiln.providers.http import ProviderError
from kiln.providers.llm import LLMClient, collect

MAX_SEED = 2**32 - 1
MAX_CONTEXT_CHARS = 8000


@dataclass
class LLMStep:
    text: str
    model: str
    seconds: float


def _sampling(parameters: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("temperature", "top_p", "max_tokens"):
        if isinstance(parameters.get(key), int | float) and not isinstance(parameters.get(key), bool):
            out[key] = parameters[key]
    return out


def optimization_for(registry: Registry, outputs: Sequence[Config]) -> str | None:
    """What the first output's model wants done to the prompt (its chunk's instruction), if any."""
    return registry.output_chunk(outputs[0]).meta.get("optimization_instruction") if outputs else None


def interception_messages(
    registry: Registry, config: Config, text: str, *, lang: str, context_override: str | None, optimization: str | None
) -> list[dict[str, str]]:
    chunk = registry.chunks["manipulate"]
    context = (context_override or pick(config.context, lang))[:MAX_CONTEXT_CHARS]
    system = chunk.template.replace("{{CONTEXT}}", context)
    if optimization:
        system += "\n\nThen prepare the result for the image or sound model:\n" + optimization
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


async def intercept(
    llm: LLMClient,
    registry: Registry,
    config: Config,
    text: str,
    *,
    lang: str,
    context_override: str | None,
    optimization: str | None,
) -> LLMStep:
    model = llm.resolve_model(config.model)
    started = time.perf_counter()
    messages = interception_messages(
        registry, config, text, lang=lang, context_override=context_override, optimization=optimization
    )
    out = await collect(llm.chat_stream(messages, model=model, **_sampling(config.parameters)))
    out = out.strip()
    if not out:
        raise ProviderError("llm", "the interception model answered nothing")
    return LLMStep(out, model, time.perf_counter() - started)


async def translate(llm: LLMClient, registry: Registry, text: str, model: str | None) -> LLMStep:
    chunk = registry.chunks["translate"]
    name = llm.resolve_model(model)
    result = await llm.chat(
        [{"role": "system", "content": chunk.template}, {"role": "user", "content": text}], model=name, temperature=0
    )
    out = result.content.strip()
    if not out:
        raise ProviderError("llm", "the translation model answered nothing")
    return LLMStep(out, result.model, result.seconds)


def choose_seed(requested: int | None, config: Config) -> int:
    if requested is not None:
        return requested
    configured = config.parameters.get("SEED")
    if isinstance(configured, int) and not isinstance(configured, bool):
        return configured
    return random.SystemRandom().randint(0, MAX_SEED)


def fill_workflow(chunk: Chunk, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the chunk's graph with each mapped input set from `values` (unmapped keys ignored).

    Only the `inputs` of the nodes written to are copied (a deep copy of the whole graph cost a
    quarter of a millisecond per run); the rest is shared with the chunk and never changed."""
    graph = dict(chunk.workflow)
    for name, mapping in chunk.input_mappings.items():
        if name in values and values[name] is not None:
            field = str(mapping["field"]).removeprefix("inputs.")
            node_id = str(mapping["node_id"])
            node = graph[node_id]
            if node is chunk.workflow.get(node_id):  # first write to this node: copy it
                node = graph[node_id] = {**node, "inputs": dict(node.get("inputs") or {})}
            node["inputs"][field] = values[name]
    return graph


def workflow_values(config: Config, prompt: str, seed: int, run_id: str) -> dict[str, Any]:
    p = config.parameters
    return {
        "prompt": prompt,
        "negative_prompt": p.get("NEGATIVE_PROMPT", ""),
        "seed": seed,
        "steps": p.get("STEPS"),
        "cfg": p.get("CFG"),
        "width": p.get("WIDTH"),
        "height": p.get("HEIGHT"),
        "duration": p.get("DURATION"),
        "filename_prefix": f"kiln_arted/{run_id}",
    }


@dataclass
class Generated:
    data: bytes
    prompt_id: str
    filename: str
    seconds: float


async def generate(comfy: ComfyUIClient, chunk: Chunk, graph: dict[str, Any], *, max_bytes: int) -> Generated:
    """Run the graph and take the file of the chunk's output node from THAT prompt's history."""
    started = time.perf_counter()
    prompt_id, entry = await comfy.run(graph)
    files = output_files(entry)
    wanted = str(chunk.output_mapping.get("node_id", ""))
    chosen = [f for f in files if f.node_id == wanted] or files
    if not chosen:
        raise ProviderError("comfyui", f"prompt {prompt_id} finished without an output file")
    data = await comfy.view(chosen[0])
    if len(data) > max_bytes:
        raise ProviderError("comfyui", f"output larger than {max_bytes} bytes")
    return Generated(data, prompt_id, chosen[0].filename, time.perf_counter() - started)


def backend_of(llm: LLMClient) -> str:
    return "llm-cloud" if llm.http.origin == "cloud" else "llm"
