"""Safety that fails closed: local word lists (can only add blocks) and the configured LLM as guard.

Word lists match whole words after normalisation (NFKC, case folding, accents and invisible
format characters removed), so "grapefruit" does not hit "rape" and "medieval" does not hit
"evil". A trailing `*` matches word beginnings; several words match as a phrase.

The guard is asked for `SAFE` or `UNSAFE: <reason>`; Llama Guard's `safe` / `unsafe\\nS1,S10` is
understood too. Anything else (an unparseable reply, an HTTP error, a timeout, no model) blocks.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from kiln.apps.arted.configs.registry import DATA, Chunk
from kiln.providers.http import OfflineBlocked, ProviderError
from kiln.providers.llm import LLMClient

LEVELS = ("kids", "youth")
LEVEL_LISTS = {"kids": ("86a", "youth", "kids"), "youth": ("86a", "youth")}
LIST_CODES = {"86a": "§86a", "youth": "youth_filter", "kids": "kids_filter"}
AUDIENCES = {"kids": "children aged 6 to 12", "youth": "teenagers aged 13 to 17"}
_WORD = re.compile(r"\w+")
_SAFE = re.compile(r"^safe[.!]?$", re.IGNORECASE)
_UNSAFE = re.compile(r"^(?:unsafe|blocked)\b[\s:,.\-]*(.*)$", re.IGNORECASE | re.DOTALL)
_HAZARD = re.compile(r"\bS(\d{1,2})\b")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Cf"))


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


@dataclass(frozen=True)
class Term:
    words: tuple[str, ...]
    prefix: bool
    label: str


class WordList:
    def __init__(self, terms: list[str]):
        self.terms: dict[str, list[Term]] = {}
        for raw in terms:
            prefix = raw.endswith("*")
            parts = tuple(words(raw.rstrip("*")))
            if parts:
                self.terms.setdefault(parts[0][:3], []).append(Term(parts, prefix, raw))

    def find(self, tokens: list[str]) -> list[str]:
        hits = []
        for i, token in enumerate(tokens):
            for term in self.terms.get(token[:3], ()):
                n = len(term.words)
                window = tokens[i : i + n]
                if len(window) < n or window[:-1] != list(term.words[:-1]):
                    continue
                last = window[-1]
                if last == term.words[-1] or (term.prefix and last.startswith(term.words[-1])):
                    hits.append(term.label)
        return hits


@lru_cache(maxsize=1)
def word_lists() -> dict[str, WordList]:
    data = json.loads((DATA / "safety" / "word_lists.json").read_text(encoding="utf-8"))
    return {name: WordList(terms) for name, terms in data.items() if not name.startswith("_")}


def word_hits(text: str, level: str) -> tuple[list[str], list[str]]:
    """(codes, terms) of the lists of `level` that `text` hits."""
    tokens = words(text)
    codes, terms = [], []
    for name in LEVEL_LISTS[level]:
        found = word_lists()[name].find(tokens)
        if found:
            codes.append(LIST_CODES[name])
            terms.extend(found)
    return codes, sorted(set(terms))


@dataclass
class Verdict:
    safe: bool
    method: str  # word_filter | llm_guard | llm_unparseable | llm_unavailable | offline
    reason: str | None = None
    codes: list[str] = field(default_factory=list)
    found_terms: list[str] = field(default_factory=list)
    model: str | None = None
    raw: str | None = None
    seconds: float = 0.0

    def record(self, level: str) -> dict[str, Any]:
        return {
            "safe": self.safe,
            "method": self.method,
            "reason": self.reason,
            "codes": self.codes,
            "found_terms": self.found_terms,
            "model": self.model,
            "safety_level": level,
        }


def parse_verdict(reply: str) -> tuple[bool, str | None, list[str]] | None:
    """(safe, reason, codes) of a guard reply, or None when it is neither format."""
    text = reply.strip().strip("`*\"' ").strip()
    if _SAFE.match(text):
        return True, None, []
    match = _UNSAFE.match(text)
    if match:
        rest = match.group(1).strip()
        codes = [f"S{n}" for n in _HAZARD.findall(rest)]
        return False, rest[:300] or "unsafe", codes
    return None


_BLOCK_MESSAGES = {
    "de": {
        "§86a": "Dein Text wurde blockiert: Er enthält ein verbotenes Symbol oder einen verbotenen Begriff "
        "(§86a StGB, Kennzeichen verfassungswidriger Organisationen).",
        "kids_filter": "Dein Text wurde vom Kinderschutz-Filter (6–12 Jahre) blockiert.",
        "youth_filter": "Dein Text wurde vom Jugendschutz-Filter (13–17 Jahre) blockiert.",
        "guard_unavailable": "Dein Text wurde blockiert: Die Sicherheitsprüfung ist gerade nicht erreichbar.",
        "guard_unparseable": "Dein Text wurde blockiert: Die Sicherheitsprüfung gab keine eindeutige Antwort.",
        "": "Dein Text wurde von der Sicherheitsprüfung blockiert.",
    },
    "en": {
        "§86a": "Your text was blocked: it contains a prohibited symbol or term (§86a StGB, symbols of "
        "unconstitutional organisations).",
        "kids_filter": "Your text was blocked by the child protection filter (ages 6–12).",
        "youth_filter": "Your text was blocked by the youth protection filter (ages 13–17).",
        "guard_unavailable": "Your text was blocked: the safety check cannot be reached right now.",
        "guard_unparseable": "Your text was blocked: the safety check gave no clear answer.",
        "": "Your text was blocked by the safety check.",
    },
}


def block_message(codes: list[str], lang: str | None) -> str:
    """What a user is told of a block, in their language (German unless `en`): the first code's reason."""
    messages = _BLOCK_MESSAGES["en" if (lang or "").lower().startswith("en") else "de"]
    return next((messages[c] for c in codes if c in messages), messages[""])


def guard_messages(chunk: Chunk, level: str, text: str) -> list[dict[str, str]]:
    rules = chunk.meta.get("levels", {}).get(level, "")
    system = chunk.template.replace("{{AUDIENCE}}", AUDIENCES[level]).replace("{{LEVEL_RULES}}", rules)
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


async def check(
    llm: LLMClient, chunk: Chunk, text: str, level: str, *, model: str | None, extra_texts: tuple[str, ...] = ()
) -> Verdict:
    """Word lists on `text` (and `extra_texts`), then the LLM guard; every failure blocks."""
    codes: list[str] = []
    terms: list[str] = []
    for candidate in (text, *extra_texts):
        c, t = word_hits(candidate, level)
        codes += [x for x in c if x not in codes]
        terms += [x for x in t if x not in terms]
    if codes:
        return Verdict(False, "word_filter", f"blocked terms: {', '.join(terms)}", codes, terms)
    try:
        name = llm.resolve_model(model)
        result = await llm.chat(guard_messages(chunk, level, text), model=name, **_sampling(chunk))
    except OfflineBlocked:
        return Verdict(
            False,
            "offline",
            "the safety check is a cloud model and the system is offline",
            ["guard_unavailable"],
            model=model,
        )
    except ProviderError as exc:
        return Verdict(
            False, "llm_unavailable", f"safety check unavailable: {exc.message}", ["guard_unavailable"], model=model
        )
    parsed = parse_verdict(result.content)
    if parsed is None:
        return Verdict(
            False,
            "llm_unparseable",
            "the safety check gave no clear answer",
            ["guard_unparseable"],
            model=result.model,
            raw=result.content[:300],
            seconds=result.seconds,
        )
    safe, reason, hazard_codes = parsed
    return Verdict(
        safe,
        "llm_guard",
        reason,
        hazard_codes or ([] if safe else ["llm_unsafe"]),
        model=result.model,
        raw=result.content[:300],
        seconds=result.seconds,
    )


def _sampling(chunk: Chunk) -> dict[str, Any]:
    params = chunk.parameters
    return {k: params[k] for k in ("temperature", "max_tokens") if k in params}
