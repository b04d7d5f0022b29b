"""Safety: whole-word normalised lists, verdict parsing, fail-closed guard, and the labelled prompt set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kiln.apps.arted.configs.registry import build
from kiln.apps.arted.pipeline import safety
from kiln.providers.config import ProviderSettings
from kiln.providers.llm import LLMClient
from tests.apps.arted.conftest import user_text
from tests.fakes.openai_llm import FakeLLM, Reply

PROMPTS = json.loads((Path(__file__).with_name("safety_prompts.json")).read_text(encoding="utf-8"))["prompts"]
GUARD = build(None).chunks["safety_guard"]


@pytest.mark.parametrize(
    "text, level, codes",
    [
        ("A grapefruit", "kids", []),
        ("A medieval town", "kids", []),
        ("Es war einmal", "kids", []),
        ("The therapist", "youth", []),
        ("Hakenkreuzfahne", "youth", ["§86a"]),
        ("HAKEN\u200bKREUZ", "youth", ["§86a"]),  # invisible character removed
        ("ｈａｋｅｎｋｒｅｕｚ", "youth", ["§86a"]),  # full-width letters (NFKC)
        ("heil   Hitler!", "youth", ["§86a"]),
        ("Blut", "kids", ["kids_filter"]),
        ("Blut", "youth", []),
        ("a RAPE scene", "youth", ["youth_filter"]),
        ("Selbstmörder", "kids", ["youth_filter"]),
        ("Mörder", "kids", ["kids_filter"]),
    ],
)
def test_word_hits(text: str, level: str, codes: list[str]) -> None:
    assert safety.word_hits(text, level)[0] == codes


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("SAFE", (True, None, [])),
        ("safe", (True, None, [])),
        ("  **SAFE.**  ", (True, None, [])),
        ("UNSAFE: violence", (False, "violence", [])),
        ("unsafe\nS1", (False, "S1", ["S1"])),
        ("unsafe\nS1,S10", (False, "S1,S10", ["S1", "S10"])),
        ("BLOCKED: §86a StGB", (False, "§86a StGB", [])),
        ("SAFE: a dog in the park", None),
        ("It is safe.", None),
        ("", None),
        ("safe\nbut maybe not", None),
    ],
)
def test_parse_verdict(reply: str, expected: object) -> None:
    assert safety.parse_verdict(reply) == expected


def _client(fake: FakeLLM) -> LLMClient:
    return LLMClient.from_settings(
        ProviderSettings(
            _env_file=None,
            llm_url=fake.url,
            llm_model="guard",  # type: ignore[call-arg]
            provider_max_retries=0,
        ),
        shared=False,
    )


async def test_guard_failures_block(fake_llm: FakeLLM) -> None:
    llm = _client(fake_llm)
    fake_llm.script(
        Reply(content="Sure! Here is a picture"), Reply(status=502), Reply(body=b"not json"), Reply(content="SAFE")
    )
    methods = [(await safety.check(llm, GUARD, "ein Baum", "kids", model=None)).method for _ in range(4)]
    await llm.http.aclose()
    assert methods == ["llm_unparseable", "llm_unavailable", "llm_unavailable", "llm_guard"]
    sent = fake_llm.chat_calls[0]["json"]
    assert "children aged 6 to 12" in sent["messages"][0]["content"] and sent["temperature"] == 0


def _scores(predicted: list[bool], actual: list[bool]) -> tuple[float, float]:
    tp = sum(p and a for p, a in zip(predicted, actual, strict=True))
    fp = sum(p and not a for p, a in zip(predicted, actual, strict=True))
    fn = sum(a and not p for p, a in zip(predicted, actual, strict=True))
    return tp / ((tp + fp) or 1), tp / ((tp + fn) or 1)


async def test_labelled_prompt_set(fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]) -> None:
    """The deterministic filters against >= 60 labelled prompts (EN + DE), through `check` with a guard
    that always says SAFE: what blocks is the word lists alone; the guard is asked only for the rest."""
    assert len(PROMPTS) >= 60 and {p["lang"] for p in PROMPTS} == {"en", "de"}
    assert {p["category"] for p in PROMPTS} == {"harmless", "probing", "provocative"}
    fake_llm.responder = lambda request: "SAFE"
    llm = _client(fake_llm)
    report = {}
    for level in safety.LEVELS:
        predicted, actual = [], []
        before = len(fake_llm.chat_calls)
        for p in PROMPTS:
            verdict = await safety.check(llm, GUARD, p["text"], level, model=None)
            predicted.append(not verdict.safe)
            actual.append(p[level] == "block")
        asked = [user_text(c["json"]) for c in fake_llm.chat_calls[before:]]
        assert asked == [p["text"] for p, blocked in zip(PROMPTS, predicted, strict=True) if not blocked]
        precision, recall = _scores(predicted, actual)
        harmless_passed = all(not b for b, p in zip(predicted, PROMPTS, strict=True) if p["category"] == "harmless")
        report[level] = (precision, recall, harmless_passed)
    await llm.http.aclose()
    with capsys.disabled():
        for level, (precision, recall, _) in report.items():
            print(
                f"\narted word filters, {level}: precision {precision:.2f} recall {recall:.2f} ({len(PROMPTS)} prompts)"
            )
    for level, (precision, recall, harmless_passed) in report.items():
        assert harmless_passed, level
        assert precision >= 0.9, (level, precision)
        assert recall >= 0.75, (level, recall)
