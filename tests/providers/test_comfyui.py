"""ComfyUI client against the loopback fake: submit, follow on the socket or poll, fetch that prompt's files."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from PIL import Image

from kiln.providers import comfyui as comfy_module
from kiln.providers.comfyui import HISTORY_CHECK, ComfyUIClient, output_files
from kiln.providers.config import ProviderSettings
from kiln.providers.http import ProviderClient, ProviderError, ProviderNotConfigured, ProviderTimeout
from tests.fakes.comfyui import FakeComfyUI


def graph(text: str, seed: int, prefix: str = "kiln/run") -> dict:
    return {
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": 1}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 128, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}},
    }


def client(fake: FakeComfyUI, timeout: float = 10) -> ComfyUIClient:
    return ComfyUIClient(ProviderClient(fake.url, name="comfyui", backoff=0.01), timeout=timeout, poll_interval=0.05)


@pytest.mark.parametrize("mode", ["ok", "no_ws"])
async def test_run_and_fetch_that_prompts_files(fake_comfyui: FakeComfyUI, mode: str) -> None:
    fake_comfyui.mode = mode
    fake_comfyui.delay = 0.05
    comfy = client(fake_comfyui)
    seen: list[float] = []

    async def progress(value: float, message: str) -> None:
        seen.append(value)

    prompt_id, entry = await comfy.run(graph("a red fox", 7, "kiln/abc"), progress=progress)
    files = output_files(entry)
    assert [(f.node_id, f.kind, f.subfolder) for f in files] == [("9", "images", "kiln")]
    data = await comfy.view(files[0])
    await comfy.http.aclose()
    image = Image.open(io.BytesIO(data))
    assert image.size == (16, 8) and image.text["prompt"] == "a red fox" and image.text["seed"] == "7"
    assert fake_comfyui.prompts[0]["prompt_id"] == prompt_id
    assert fake_comfyui.views == [{"filename": files[0].filename, "subfolder": "kiln", "type": "output"}]
    assert (seen == [1.0]) == (mode == "ok")


async def test_concurrent_prompts_get_their_own_files(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.delay = 0.05
    comfy = client(fake_comfyui)

    async def one(i: int) -> str:
        _, entry = await comfy.run(graph(f"prompt {i}", i, f"kiln/{i}"))
        return Image.open(io.BytesIO(await comfy.view(output_files(entry)[0]))).text["prompt"]

    results = await asyncio.gather(*(one(i) for i in range(6)))
    await comfy.http.aclose()
    assert results == [f"prompt {i}" for i in range(6)]


async def test_refused_graph(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.mode = "refuse"
    comfy = client(fake_comfyui)
    with pytest.raises(ProviderError, match="failed validation") as err:
        await comfy.run(graph("x", 1))
    await comfy.http.aclose()
    assert err.value.status == 400


async def test_execution_error(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.mode = "error"
    comfy = client(fake_comfyui)
    with pytest.raises(ProviderError, match="CUDA out of memory"):
        await comfy.run(graph("x", 1))
    await comfy.http.aclose()


async def test_timeout(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.delay = 2
    comfy = client(fake_comfyui, timeout=0.3)
    with pytest.raises(ProviderTimeout):
        await comfy.run(graph("x", 1))
    await comfy.http.aclose()


def test_unset_url_names_the_setting() -> None:
    with pytest.raises(ProviderNotConfigured, match="KILN_COMFYUI_URL"):
        ComfyUIClient.from_settings(ProviderSettings(_env_file=None, comfyui_url=None))  # type: ignore[call-arg]


async def test_runs_share_one_socket_and_hear_instant_prompts_end_without_polling(fake_comfyui: FakeComfyUI) -> None:
    comfy = client(fake_comfyui)
    started = time.perf_counter()
    for i in range(3):  # the fake ends each prompt before its /prompt answer is read
        await comfy.run(graph(f"p{i}", i))
    await asyncio.gather(*(comfy.run(graph(f"c{i}", i)) for i in range(4)))
    elapsed = time.perf_counter() - started
    assert len(fake_comfyui.sockets) == 1 and len(next(iter(fake_comfyui.sockets.values()))) == 1
    assert {p["client_id"] for p in fake_comfyui.prompts} == set(fake_comfyui.sockets)
    assert elapsed < HISTORY_CHECK  # every end was heard on the socket, none waited for a history check
    await comfy.http.aclose()
    for _ in range(50):  # the socket is closed with the client
        if not next(iter(fake_comfyui.sockets.values())):
            break
        await asyncio.sleep(0.02)
    assert next(iter(fake_comfyui.sockets.values())) == []


async def test_a_broken_socket_is_opened_again_for_the_next_run(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.delay = 0.05
    comfy = client(fake_comfyui)
    await comfy.run(graph("first", 1))
    stream = comfy_module._streams[comfy.http]
    await stream.socket.close()
    await asyncio.sleep(0.05)
    assert stream.socket is None
    prompt_id, entry = await comfy.run(graph("second", 2))
    assert output_files(entry) and stream.socket is not None
    await comfy.http.aclose()
