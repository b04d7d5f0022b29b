"""Prompt composition from the active adapters.

Active adapters in (ordinal, name) order become `<lora:NAME:WEIGHT>` tokens. NAME is what
SDNext/A1111 resolve: the file stem, or the `ss_output_name` alias when the stem is shared
by another adapter file and the alias is not (never the display name). Each token is followed
by the adapter's trigger words (trained words, triggers, activation text; de-duplicated) unless
`include_trigger_words` is false. Weights are written trimmed (`1`, `0.75`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.lora.models import Adapter


def format_weight(weight: float) -> str:
    text = f"{weight:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def token_for(name: str, weight: float) -> str:
    return f"<lora:{name}:{format_weight(weight)}>"


def trigger_words(adapter: Adapter) -> list[str]:
    seen: set[str] = set()
    words: list[str] = []
    for word in [*(adapter.trained_words or []), *(adapter.triggers or []), adapter.activation_text or ""]:
        word = word.strip()
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            words.append(word)
    return words


@dataclass
class Composition:
    prompt: str
    tokens: list[str]
    warnings: list[str] = field(default_factory=list)
    adapters: list[dict[str, Any]] = field(default_factory=list)


async def _shared_stems(session: AsyncSession, stems: list[str]) -> set[str]:
    rows = await session.execute(
        select(Adapter.file_stem)
        .where(Adapter.file_stem.in_(stems))
        .group_by(Adapter.file_stem)
        .having(func.count(func.distinct(Adapter.file_path)) > 1)
    )
    return {r[0] for r in rows}


async def compose(
    session: AsyncSession, *, prefix: str | None = None, suffix: str | None = None, include_trigger_words: bool = True
) -> Composition:
    adapters = list(
        (
            await session.scalars(
                select(Adapter)
                .where(Adapter.active.is_(True))
                .order_by(func.coalesce(Adapter.ordinal, 0), Adapter.name, Adapter.id)
            )
        ).all()
    )
    warnings: list[str] = []
    if not adapters:
        warnings.append("No active adapters found for composition")
    shared = await _shared_stems(session, [a.file_stem for a in adapters if a.file_stem])
    alias_count: dict[str, int] = {}
    for a in adapters:
        if a.alias:
            alias_count[a.alias.casefold()] = alias_count.get(a.alias.casefold(), 0) + 1
    chosen: dict[str, Adapter] = {}
    names: dict[str, str] = {}
    for a in adapters:
        stem = a.file_stem or os.path.splitext(os.path.basename(a.file_path))[0]
        name = stem
        if stem in shared:
            if a.alias and alias_count.get(a.alias.casefold(), 0) == 1:
                name = a.alias
            else:
                warnings.append(f"File name '{stem}' is shared by several adapter files; SDNext may load another one")
        key = name.casefold()
        if key in chosen:
            warnings.append(
                f"Adapter '{a.name}' resolves to the same LoRA as '{chosen[key].name}'; kept the larger weight"
            )
            if a.weight > chosen[key].weight:
                chosen[key] = a
            continue
        chosen[key] = a
        names[a.id] = name
    clashes = sorted(alias for alias, n in alias_count.items() if n > 1)
    if clashes:
        warnings.append(f"Adapters with clashing aliases: {', '.join(clashes)}")
    kept = [a for a in adapters if a.id in names and chosen[names[a.id].casefold()] is a]
    missing = await asyncio.to_thread(lambda: [a.name for a in kept if not os.path.isfile(a.file_path)])
    if missing:
        warnings.append(f"Adapter files missing: {', '.join(missing)}")
    zero = [a.name for a in kept if a.weight == 0]
    if zero:
        warnings.append(f"Adapters with zero weight: {', '.join(zero)}")
    bases = sorted({a.sd_version for a in kept if a.sd_version})
    if len(bases) > 1:
        warnings.append(f"Active adapters mix base models: {', '.join(bases)}")
    tokens: list[str] = []
    segments: list[str] = []
    views: list[dict[str, Any]] = []
    for a in kept:
        token = token_for(names[a.id], a.weight)
        tokens.append(token)
        words = trigger_words(a) if include_trigger_words else []
        segments.append(", ".join([token, *words]) if words else token)
        views.append({"id": a.id, "name": a.name, "token": token, "weight": a.weight, "trigger_words": words})
    prompt = " ".join(part for part in [(prefix or "").strip(), *segments, (suffix or "").strip()] if part)
    return Composition(prompt=prompt, tokens=tokens, warnings=warnings, adapters=views)
