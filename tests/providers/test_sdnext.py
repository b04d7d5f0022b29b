"""The SDNext client against the loopback fake (its real format: `info` as a JSON string) and,
for the retry/offline policy it takes from the shared `ProviderClient`, a mock transport."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from kiln.providers.sdnext import SDNextClient, SDNextError, SDNextUnavailable, parse_info
from tests.fakes.sdnext import FakeSDNext, fake_sdnext  # noqa: F401  (fixture)

SMALL = {"prompt": "a cat", "steps": 4, "width": 64, "height": 64, "seed": 42}


def test_info_string_is_parsed() -> None:
    info, raw = parse_info(json.dumps({"seed": 5, "prompt": "x"}))
    assert info == {"seed": 5, "prompt": "x"} and raw is not None
    assert parse_info({"seed": 1})[0] == {"seed": 1}
    assert parse_info("not json")[0] == {"text": "not json"}


async def test_client_against_fake(fake_sdnext: FakeSDNext) -> None:  # noqa: F811
    async with SDNextClient(fake_sdnext.url) as client:
        assert (await client.options())["sd_model_checkpoint"]
        idle = await client.progress()
        assert idle.progress == 0 and not idle.busy and idle.task_id is None
        result = await client.txt2img({**SMALL, "force_task_id": "task(x)"})
        assert len(result.images) == 1 and result.info["seed"] == 42
        assert Image.open(io.BytesIO(result.images[0])).size == (64, 64)
        fake_sdnext.fail_next("CUDA out of memory. Tried to allocate 2.00 GiB")
        with pytest.raises(SDNextError, match="CUDA out of memory"):
            await client.txt2img(SMALL)
        # A failed generation is not sent again (the 500 is not retried): one more txt2img only.
        assert sum(1 for m, p, _ in fake_sdnext.requests if p == "/sdapi/v1/txt2img") == 2
        await client.refresh_loras()
        assert await client.loras() == []
    async with SDNextClient("http://127.0.0.1:9", max_retries=0) as down:
        with pytest.raises(SDNextUnavailable, match="not reachable"):
            await down.options()


def _mock(answers: list[int], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0) if answers else 200
        if status != 200:
            return httpx.Response(status, json={"error": "busy", "errors": "try later"})
        if request.url.path.endswith("/txt2img"):
            return httpx.Response(200, json={"images": [], "info": "{}"})
        return httpx.Response(200, json={"progress": 0.5, "state": {"job_count": 1}, "id": "task(a)"})

    return httpx.MockTransport(handle)


async def test_reads_are_retried_generation_is_not() -> None:
    seen: list[httpx.Request] = []
    answers = [503, 502]
    async with SDNextClient("http://127.0.0.1:1", transport=_mock(answers, seen)) as client:
        client.http.backoff = 0.001
        progress = await client.progress()
        assert progress.task_id == "task(a)" and len(seen) == 3
        seen.clear()
        answers.append(503)
        with pytest.raises(SDNextError, match="try later") as failed:
            await client.txt2img(SMALL)
        assert failed.value.status == 503 and len(seen) == 1


async def test_basic_auth_and_offline_guard() -> None:
    seen: list[httpx.Request] = []
    async with SDNextClient("http://127.0.0.1:1", username="ann", password="pw", transport=_mock([], seen)) as c:
        await c.progress()
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(b"ann:pw").decode()
    # A server outside loopback/LAN counts as cloud: not called while the profile is offline.
    async with SDNextClient(
        "https://sdnext.example.com", offline_guard=lambda: True, transport=_mock([], seen)
    ) as remote:
        with pytest.raises(SDNextUnavailable, match="offline"):
            await remote.options()
    assert len(seen) == 1
