"""The seeded quote set (written for Kiln; inserted once, never overwriting admin edits)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.content.models import GenaiQuote

# (language, text, author, source_universe, tone, tags)
QUOTES: list[tuple[str, str, str, str, str, list[str]]] = [
    (
        "en",
        "A kiln does not hurry the clay; it only keeps the fire honest.",
        "Kiln",
        "Workshop",
        "reflective",
        ["craft", "patience"],
    ),
    ("en", "Measure twice, ship once, and keep the logs.", "Kiln", "Workshop", "funny", ["engineering"]),
    (
        "en",
        "An answer without a source is only a guess with good manners.",
        "Kiln",
        "Library",
        "funny",
        ["retrieval", "citations"],
    ),
    (
        "en",
        "Offline is not a limitation; it is a promise about where your data goes.",
        "Kiln",
        "Workshop",
        "reflective",
        ["privacy", "offline"],
    ),
    ("en", "Small models, well placed, beat large ones left waiting.", "Kiln", "Workshop", "funny", ["models"]),
    ("en", "Every retry deserves a backoff, and every backoff a limit.", "Kiln", "Workshop", "funny", ["engineering"]),
    ("en", "Read the error message; it was written for you.", "Kiln", "Workshop", "reflective", ["debugging"]),
    (
        "es",
        "El horno no apresura el barro; solo mantiene honesto el fuego.",
        "Kiln",
        "Taller",
        "reflective",
        ["oficio", "paciencia"],
    ),
    (
        "es",
        "Una respuesta sin fuente es solo una conjetura con buenos modales.",
        "Kiln",
        "Biblioteca",
        "funny",
        ["recuperación"],
    ),
    ("es", "Mide dos veces, publica una, y guarda los registros.", "Kiln", "Taller", "funny", ["ingeniería"]),
]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()


async def seed_quotes(session: AsyncSession, kernel: Any) -> None:
    if await session.scalar(select(func.count()).select_from(GenaiQuote)):
        return
    for language, text, author, universe, tone, tags in QUOTES:
        session.add(
            GenaiQuote(
                language=language,
                text=text,
                text_hash=text_hash(text),
                author=author,
                source_universe=universe,
                tone=tone,
                tags=tags,
                origin="local",
            )
        )
    await session.flush()
