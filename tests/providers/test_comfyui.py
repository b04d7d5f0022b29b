"""ComfyUI client against the loopback fake: submit, follow on the socket or poll, fetch that prompt's files."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from kiln.providers.comfyui import ComfyUIClient, output_files
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
