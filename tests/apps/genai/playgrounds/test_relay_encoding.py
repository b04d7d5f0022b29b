"""The relay writes each token's `delta` event without the generic event writer's per-token dict."""

from __future__ import annotations

from kiln.apps.genai.playgrounds.chat import sse, sse_delta


def test_delta_events_are_encoded_as_the_generic_event_writer_does() -> None:
    for text in ["t1 ", "", 'quote " back\\slash\nnewline', "é \u2028 😀 \x00"]:
        assert sse_delta(text) == sse("delta", {"text": text})
