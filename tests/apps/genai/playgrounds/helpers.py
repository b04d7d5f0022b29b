"""Playground test setup: an LLM model active and bound in the active deployment (served by the fake)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import uvicorn

from tests.apps.genai.helpers import login, make_user, recorded_sql  # noqa: F401  (re-exported)
from tests.apps.genai.modelops_helpers import active_deployment, bind_llm, ready_model

MODEL = {
    "id": "chat-local",
    "name": "Chat local",
    "provider": "vllm",
    "backend": "local",
    "task_key": "llm",
    "provider_model_id": "fake-chat",
}
P = "/v1/playgrounds"


async def chat_ready(app, client, model: dict = MODEL) -> dict[str, dict[str, str]]:
    """Superadmin + two users; the model bound in the active llm_inference binding."""
    await make_user(app, "root@example.com", "superadmin")
    sa = await login(client, "root@example.com")
    await ready_model(client, sa, model)
    dep = await active_deployment(client, sa)
    llm = next(b for b in dep["bindings"] if b["capability"] == "llm_inference")
    await bind_llm(client, sa, dep["id"], llm["provider"]["id"], [model["id"]])
    await make_user(app, "ann@example.com")
    await make_user(app, "bob@example.com")
    return {"sa": sa, "ann": await login(client, "ann@example.com"), "bob": await login(client, "bob@example.com")}


async def new_session(client, headers, **body) -> dict:
    r = await client.post(
        f"{P}/sessions",
        headers=headers,
        json={"playground_kind": "chat", "model_selection": {"model_id": MODEL["id"]}, **body},
    )
    assert r.status_code == 201, r.text
    return r.json()["session"]


def parse_events(raw: str) -> list[tuple[str, dict]]:
    out = []
    for block in raw.split("\n\n"):
        lines = [line for line in block.split("\n") if line]
        if not lines:
            continue
        event = next((line[6:].strip() for line in lines if line.startswith("event:")), "message")
        data = "\n".join(line[5:].lstrip() for line in lines if line.startswith("data:"))
        out.append((event, json.loads(data)))
    return out


async def read_events(response: httpx.Response) -> AsyncIterator[tuple[float, str, dict]]:
    """SSE events as they arrive, each with its arrival time (perf_counter)."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            for event, data in parse_events(block + "\n\n"):
                yield time.perf_counter(), event, data


class LiveServer:
    """The app served by uvicorn on a loopback port (real sockets: streaming and disconnects)."""

    def __init__(self, app):
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off")
        )
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> str:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            assert not self.task.done(), "server did not start"
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task
