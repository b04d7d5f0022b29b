"""Playground streaming through Kiln vs the model server itself, each figure beside its baseline.

Two processes on loopback besides this one: a streaming fake OpenAI-compatible server (raw asyncio
HTTP/1.1; its answer is paced by the prompt "tokens=N gap_ms=G ttft_ms=T") and `kiln serve`
(uvicorn, genai only, SQLite under a temporary KILN_HOME or PostgreSQL with --pg), set up through
the API as in bench/genai_gateway.py (model tested, validated, activated and bound).

1. Time to first token: the fake's first content chunk read directly vs the first `delta` event of
   `POST /v1/playgrounds/sessions/{id}/messages/stream` (same prompt, interleaved rounds, one
   session per round so history does not grow). Added TTFT = paired difference, p50/p95.
   Goal: p50 < 5 ms.
2. Relay throughput: tokens/s of a 400-token answer (tokens over the time from sending the request
   to the last token) read directly vs relayed by Kiln, paced (1 ms between tokens) and unpaced (as
   fast as the fake writes). Timed from the request, not from the first token: Kiln writes the
   events that queued up during one write in the next, so an unpaced answer can arrive in a few
   reads and "first to last token" would then shrink to nothing (printed beside, for reference).
   Unpaced, the fake's answer takes ~10 ms, so Kiln's fixed per-request work weighs on that ratio.
   Goal: >= 95 % of the fake's.
   Beside it, from the fake's own clock (CLOCK_MONOTONIC, shared by the processes; the prompt tags
   each answer `run=<id>` and the client fetches the fake's record from GET /v1/emitted/<id>): the
   fake's own rate (tokens over request read to last token written) in the direct and in the
   relayed runs, and "via Kiln vs the fake's own rate in the same run" — what Kiln's relay itself
   loses. The two differ because the fake paces with relative sleeps: whatever runs on its CPU
   between a token's write and its next sleep (Kiln, woken by that write, is placed on the writer's
   CPU) delays every later token, so the fake itself emits slower when Kiln relays. Also the
   split of a relayed turn (Kiln before the upstream request; last token written to last delta
   read) and the fake's CPU, times scheduled and time from resumption to token written.
   `--pin-fake` (diagnostic) puts the fake on a CPU of its own and Kiln and the client on the others.
   Each run also streams the same answer through a reference relay (this file's `--reference`
   process: uvloop + httptools, deltas written from the upstream read callback, no framework, no
   auth, no database): what the leanest Python relay of this fake reaches on this machine, printed
   as its share of the direct rate and as Kiln's rate over its rate.
3. 100 concurrent streaming sessions (50 tokens, 5 ms apart): errors, complete events, wall time,
   answers persisted.
4. Knowledge chat overhead: time to first token of a knowledge session (binding checks, query
   embedding, retrieval, prompt with references) minus that of a plain chat session, interleaved,
   on a knowledge base of `--kb-chunks` chunks (default 100,000, the issue's scale) loaded straight
   into the tables by bench/genai_rag.py's loader (local embeddings, embedded store). Goal: p50 < 25 ms.

    PYTHONPATH=src:. .venv/bin/python bench/genai_chat.py [--rounds 200] [--kb-chunks 100000] [--pg]
        [--only ttft,relay,concurrent,knowledge] [--profile kiln.prof] [--paced-runs 5] [--pin-fake]

Sections 1 and 2 also print Kiln's CPU time per streamed turn (server process, all threads, from
/proc/<pid>/task/*/schedstat), a figure that holds on a loaded machine where the wall-clock ones
do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genai_gateway import (  # noqa: E402
    ANSWER,
    MODELS,
    PASSWORD,
    Servers,
    fake_main,
    free_port,
    pct,
    processes,
    setup,
    wait_listening,
)
from genai_rag import load_chunks  # noqa: E402

from kiln.apps.genai.context.models import KnowledgeBase  # noqa: E402
from kiln.core.db import Database  # noqa: E402

PACE = re.compile(r"tokens=(\d+) gap_ms=([\d.]+) ttft_ms=([\d.]+)")
RUN = re.compile(r"run=(\w+)")
# The fake's own clock per answer whose prompt names a run: (request read, first token written,
# last token written), `time.perf_counter()` seconds, i.e. CLOCK_MONOTONIC, one clock for every
# process on the machine, so the client can set them beside its own marks. GET /v1/emitted/<run>.
EMITTED: dict[str, tuple[float, float, float]] = {}


# ------------------------------------------------------------------ streaming fake (own process)


def _chunk(text: str) -> bytes:
    data = json.dumps(
        {
            "object": "chat.completion.chunk",
            "model": "bench-chat",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        }
    )
    event = f"data: {data}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(event), event)


def _content_length(head: bytes) -> int:
    return next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )


async def _fake_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = _content_length(head)
            body = json.loads(await reader.readexactly(length)) if length else {}
            received = time.perf_counter()
            if head.startswith(b"GET /v1/emitted/"):
                run = head.split(b" ", 2)[1].rsplit(b"/", 1)[1].decode()
                payload = json.dumps(EMITTED.pop(run, None)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                await writer.drain()
                continue
            if head.startswith(b"GET") or not body.get("stream"):
                payload = MODELS if head.startswith(b"GET") else ANSWER
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(payload), payload)
                )
                await writer.drain()
                continue
            prompt = str(body["messages"][-1]["content"])
            match = PACE.search(prompt)
            tokens, gap, ttft = (int(match[1]), float(match[2]), float(match[3])) if match else (10, 0.0, 0.0)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
            await writer.drain()
            if ttft:
                await asyncio.sleep(ttft / 1000)
            first = last = writing = 0.0  # writing: the time from each resumption to its token written
            for i in range(tokens):
                woke = time.perf_counter()
                writer.write(_chunk(f"t{i} "))
                await writer.drain()
                last = time.perf_counter()
                writing += last - woke
                first = first or last
                if gap:
                    await asyncio.sleep(gap / 1000)
            run = RUN.search(prompt)
            if run:
                EMITTED[run[1]] = (received, first, last, writing)
            done = b"data: [DONE]\n\n"
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


# ------------------------------------------------------------------ reference relay (own process)


class _ReferenceUpstream(asyncio.Protocol):
    """A keep-alive connection to the fake (idle ones are reused, as Kiln's pool does); its answer
    is parsed by httptools as it arrives and each read's deltas go to the client in one write from
    inside the read callback (no task, no future, no framework)."""

    idle: list[_ReferenceUpstream] = []

    def __init__(self) -> None:
        import httptools

        self.client: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.idle:
            self.idle.remove(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        lines = (self.pending + body).split(b"\n")
        self.pending = lines.pop()
        events = [
            b'event: delta\ndata: {"text":'
            + json.dumps(json.loads(line[5:])["choices"][0]["delta"]["content"]).encode()
            + b"}\n\n"
            for line in lines
            if line.startswith(b"data: {")
        ]
        if events:
            out = b"".join(events)
            self.client.write(b"%x\r\n%s\r\n" % (len(out), out))

    def on_message_complete(self) -> None:
        done = b"event: complete\ndata: {}\n\n"
        self.client.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        self.client, self.pending = None, b""
        self.idle.append(self)


class _ReferenceClient(asyncio.Protocol):
    """`POST /relay {"prompt": ...}`: the same chat request to the fake, its deltas relayed as SSE."""

    def __init__(self, fake_port: int):
        self.fake_port = fake_port
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, found, rest = self.buffer.partition(b"\r\n\r\n")
        length = _content_length(head)
        if found and len(rest) >= length:
            self.buffer = rest[length:]
            asyncio.get_running_loop().create_task(self.relay(json.loads(rest[:length])["prompt"]))

    async def relay(self, prompt: str) -> None:
        body = json.dumps({"model": "bench-chat", "stream": True, "messages": [{"role": "user", "content": prompt}]})
        if _ReferenceUpstream.idle:
            upstream = _ReferenceUpstream.idle.pop()
        else:
            _, upstream = await asyncio.get_running_loop().create_connection(
                _ReferenceUpstream, "127.0.0.1", self.fake_port
            )
        upstream.client = self.transport
        upstream.transport.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body.encode())
        )
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )


def reference_main(port: int, fake_port: int) -> None:
    """The leanest relay Python does here: uvloop (what `kiln serve` runs on), httptools, the deltas
    written from the upstream read callback. No auth, no database, no persistence: what any Python
    relay of this fake costs on this machine, measured beside Kiln in the same run."""
    import uvloop

    async def run() -> None:
        server = await asyncio.get_running_loop().create_server(lambda: _ReferenceClient(fake_port), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    uvloop.run(run())


# ------------------------------------------------------------------ measurements


class Marks:
    """Counts a marker in a byte stream read in pieces, and when the first and the last one came.

    The client counts markers in the raw bytes instead of splitting lines: per read that is one
    `bytes.count`, whatever the read holds. Splitting lines in Python cost the client per line, and
    Kiln's events have three lines where the fake's chunks have two, so the client itself took
    longer to read the same tokens through Kiln and the ratio measured part of the bench's own
    CPU (on 2 cores the client, Kiln and the fake share them)."""

    def __init__(self, marker: bytes):
        self.marker = marker
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self._tail = b""  # the end of the previous read: a marker may be cut between two reads

    def feed(self, data: bytes) -> None:
        joined = self._tail + data
        found = joined.count(self.marker)
        self._tail = joined[-(len(self.marker) - 1) :]
        if found:
            self.count += found
            self.last = time.perf_counter()
            self.first = self.first if self.first is not None else self.last


async def direct_stream(client: httpx.AsyncClient, fake: str, prompt: str) -> tuple[float, float, int, float]:
    """(ms to first content chunk, ms to the last chunk, content chunks, perf_counter() when the
    request was sent), read directly."""
    body = {"model": "bench-chat", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    marks = Marks(b"data: {")
    t0 = time.perf_counter()
    async with client.stream("POST", fake + "/chat/completions", json=body) as response:
        async for data in response.aiter_raw():
            marks.feed(data)
    first = marks.first or time.perf_counter()
    return (first - t0) * 1000, ((marks.last or first) - t0) * 1000, marks.count, t0


async def kiln_stream(
    client: httpx.AsyncClient, headers: dict[str, str], session_id: str, prompt: str
) -> tuple[float, float, int, bool, float]:
    """(ms to the first delta event, ms to the last delta event, deltas, complete seen,
    perf_counter() when the request was sent)."""
    marks, complete = Marks(b"event: delta\n"), Marks(b"event: complete\n")
    t0 = time.perf_counter()
    async with client.stream(
        "POST", f"/v1/playgrounds/sessions/{session_id}/messages/stream", json={"prompt": prompt}, headers=headers
    ) as response:
        if response.status_code != 200:
            raise SystemExit(f"stream refused: {response.status_code} {(await response.aread())[:200]!r}")
        async for data in response.aiter_raw():
            marks.feed(data)
            complete.feed(data)
    first = marks.first or time.perf_counter()
    return (first - t0) * 1000, ((marks.last or first) - t0) * 1000, marks.count, complete.count > 0, t0


async def reference_stream(client: httpx.AsyncClient, url: str, prompt: str) -> tuple[float, int, float]:
    """(ms to the last delta event, deltas, perf_counter() when the request was sent), relayed by
    the reference relay."""
    marks = Marks(b"event: delta\n")
    t0 = time.perf_counter()
    async with client.stream("POST", url + "/relay", json={"prompt": prompt}) as response:
        async for data in response.aiter_raw():
            marks.feed(data)
    return ((marks.last or time.perf_counter()) - t0) * 1000, marks.count, t0


async def emitted(client: httpx.AsyncClient, fake: str, run: str, t0: float) -> tuple[float, float, float]:
    """(ms from the request's sending to the fake reading it, ms from there to the fake's last
    token write, ms of that spent writing tokens rather than asleep between them) of the answer
    the prompt tagged `run=<run>`, from the fake's own clock."""
    received, _, last, writing = (await client.get(f"{fake}/emitted/{run}")).json()
    return (received - t0) * 1000, (last - received) * 1000, writing * 1000


async def new_session(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post(
        "/v1/playgrounds/sessions",
        headers=headers,
        json={"playground_kind": "chat", "model_selection": {"model_id": "bench-local"}},
    )
    r.raise_for_status()
    return r.json()["session"]["id"]


def row(label: str, values: list[float], unit: str = "ms") -> str:
    return f"  {label:30s} p50 {pct(values, 0.5):8.2f} {unit}  p95 {pct(values, 0.95):8.2f} {unit}"


def server_cpu(pid: int) -> float:
    """CPU seconds of the server process so far, all its threads: the scheduler's nanoseconds from
    /proc where there are some (psutil's user + system come in 10 ms ticks, coarser than a turn)."""
    return sched(pid)[0]


def sched(pid: int) -> tuple[float, int]:
    """(CPU seconds, times scheduled onto a CPU) of a process so far, all its threads, from
    /proc/<pid>/task/*/schedstat (the second: its wake-ups plus its preemptions)."""
    try:
        total = slices = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                fields = stat.read().split()
                total += int(fields[0])
                slices += int(fields[2])
        return total / 1e9, slices
    except (OSError, ValueError, IndexError):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system, 0


async def ttft(
    kiln: httpx.AsyncClient, direct: httpx.AsyncClient, user: dict, fake: str, rounds: int, pid: int
) -> None:
    prompt = "tokens=5 gap_ms=0 ttft_ms=20"
    sessions = [await new_session(kiln, user) for _ in range(rounds + 10)]
    d_ms, k_ms = [], []
    cpu = 0.0
    for i, sid in enumerate(sessions):
        d = (await direct_stream(direct, fake, prompt))[0]
        before = server_cpu(pid)
        k = (await kiln_stream(kiln, user, sid, prompt))[0]
        if i >= 10:
            cpu += server_cpu(pid) - before
            d_ms.append(d)
            k_ms.append(k)
    added = [k - d for k, d in zip(k_ms, d_ms, strict=True)]
    print(f"1. time to first token, {rounds} rounds (the fake waits 20 ms before its first token)")
    print(row("direct (baseline)", d_ms))
    print(row("via Kiln (first delta event)", k_ms))
    print(row("added by Kiln (paired)", added) + "   goal p50 < 5 ms")
    print(f"  Kiln CPU per streamed turn     {cpu / rounds * 1000:8.2f} ms (server process, whole turn)")


async def throughput(
    kiln: httpx.AsyncClient,
    direct: httpx.AsyncClient,
    user: dict,
    fake: str,
    pids: tuple[int, int, int],
    paced_runs: int,
    reference: str,
) -> None:
    pid, fake_pid, reference_pid = pids
    print("2. relay throughput, 400-token answers (direct, via Kiln and via the reference relay in turn; medians)")
    # An unpaced answer lasts a few ms, so one scheduling hiccup moves a run by tens of percent:
    # it gets more runs than the paced one (~0.5 s each), and each side's spread is printed.
    for label, gap, runs in (("paced 1 ms/token", 1, paced_runs), ("unpaced", 0, 25)):
        prompt = f"tokens=400 gap_ms={gap} ttft_ms=0 run="
        d_rates, k_rates, k_relay, k_cpu, k_slices = [], [], [], [], []
        # The fake's own clock (request read, last token written) beside the client's marks, and
        # its CPU: whether the relayed run is slower because Kiln lags or because the fake does.
        d_emit, k_emit, k_lead, k_tail, d_tail = [], [], [], [], []
        f_cpu, f_slices, f_writing = ([], []), ([], []), ([], [])
        r_rates, r_emit, r_cpu = [], [], []
        for _ in range(runs):
            run = uuid.uuid4().hex
            f_before = sched(fake_pid)
            _, d_total, d_count, t0 = await direct_stream(direct, fake, prompt + run)
            f_after = sched(fake_pid)
            lead, emit, writing = await emitted(direct, fake, run, t0)
            f_writing[0].append(writing)
            d_emit.append(d_count / emit * 1000)
            d_tail.append(d_total - lead - emit)
            f_cpu[0].append(f_after[0] - f_before[0])
            f_slices[0].append(f_after[1] - f_before[1])
            sid, run = await new_session(kiln, user), uuid.uuid4().hex
            before, f_before = sched(pid), sched(fake_pid)
            k_first, k_total, k_count, complete, t0 = await kiln_stream(kiln, user, sid, prompt + run)
            after, f_after = sched(pid), sched(fake_pid)
            k_cpu.append(after[0] - before[0])
            k_slices.append(after[1] - before[1])
            f_cpu[1].append(f_after[0] - f_before[0])
            f_slices[1].append(f_after[1] - f_before[1])
            if not complete or k_count != d_count:
                raise SystemExit(f"relay lost tokens: {k_count} of {d_count}")
            lead, emit, writing = await emitted(direct, fake, run, t0)
            f_writing[1].append(writing)
            k_emit.append(k_count / emit * 1000)
            k_lead.append(lead)
            k_tail.append(k_total - lead - emit)
            d_rates.append(d_count / d_total * 1000)
            k_rates.append(k_count / k_total * 1000)
            k_relay.append(k_total - k_first)
            run, before = uuid.uuid4().hex, sched(reference_pid)
            r_total, r_count, t0 = await reference_stream(direct, reference, prompt + run)
            r_cpu.append(sched(reference_pid)[0] - before[0])
            if r_count != d_count:
                raise SystemExit(f"reference relay lost tokens: {r_count} of {d_count}")
            r_rates.append(r_count / r_total * 1000)
            r_emit.append(r_count / (await emitted(direct, fake, run, t0))[1] * 1000)
        d, k = statistics.median(d_rates), statistics.median(k_rates)
        de, ke = statistics.median(d_emit), statistics.median(k_emit)
        same_run = statistics.median(rate / own for rate, own in zip(k_rates, k_emit, strict=True))
        print(
            f"  {label:18s} direct {d:8.0f} tok/s   via Kiln {k:8.0f} tok/s   ratio {k / d:6.1%}  (goal >= 95 %)"
            f"   [Kiln first to last delta: {statistics.median(k_relay):.1f} ms]"
        )
        print(
            f"  {'':18s} the fake's own rate (request read to last token written): {de:.0f} tok/s in the direct runs,"
            f" {ke:.0f} in the relayed ones ({ke / de:.1%});"
            f" via Kiln vs the fake's own rate in the same run {same_run:.1%}"
        )
        print(
            f"  {'':18s} relayed turn, ms: Kiln before the upstream request {statistics.median(k_lead):.2f},"
            f" last token written to last delta read {statistics.median(k_tail):.2f}"
            f" (direct: last chunk read {statistics.median(d_tail):.2f})"
        )
        print(
            f"  {'':18s} per 400-token turn: Kiln CPU {statistics.median(k_cpu) * 1000:.1f} ms,"
            f" scheduled {statistics.median(k_slices):.0f} times; the fake's CPU direct / relayed"
            f" {statistics.median(f_cpu[0]) * 1000:.1f} / {statistics.median(f_cpu[1]) * 1000:.1f} ms,"
            f" scheduled {statistics.median(f_slices[0]):.0f} / {statistics.median(f_slices[1]):.0f} times,"
            f" resumed to token written {statistics.median(f_writing[0]):.1f}"
            f" / {statistics.median(f_writing[1]):.1f} ms"
        )
        r = statistics.median(r_rates)
        print(
            f"  {'':18s} reference relay (no framework, same run): {r:.0f} tok/s, {r / d:.1%} of direct;"
            f" the fake's own rate meanwhile {statistics.median(r_emit):.0f} tok/s;"
            f" its CPU per turn {statistics.median(r_cpu) * 1000:.1f} ms; Kiln vs the reference relay {k / r:.1%}"
        )
        print(
            f"  {'':18s} {runs} runs, p25-p75 tok/s direct {pct(d_rates, 0.25):.0f}-{pct(d_rates, 0.75):.0f},"
            f" via Kiln {pct(k_rates, 0.25):.0f}-{pct(k_rates, 0.75):.0f},"
            f" via the reference {pct(r_rates, 0.25):.0f}-{pct(r_rates, 0.75):.0f}"
        )


async def concurrent(kiln: httpx.AsyncClient, user: dict, n: int) -> None:
    prompt = "tokens=50 gap_ms=5 ttft_ms=0"
    sessions = [await new_session(kiln, user) for _ in range(n)]
    t0 = time.perf_counter()
    results = await asyncio.gather(*(kiln_stream(kiln, user, sid, prompt) for sid in sessions), return_exceptions=True)
    wall = time.perf_counter() - t0
    errors = [r for r in results if isinstance(r, BaseException)]
    ok = [r for r in results if not isinstance(r, BaseException) and r[3] and r[2] == 50]
    persisted = 0
    async with httpx.AsyncClient(base_url=str(kiln.base_url), timeout=60) as fresh:  # no idle keep-alives
        for sid in sessions:
            r = await fresh.get(f"/v1/playgrounds/sessions/{sid}", headers=user)
            persisted += r.json()["session"]["message_count"] == 2
    firsts = [r[0] for r in results if not isinstance(r, BaseException)]
    print(f"3. {n} concurrent streaming sessions (50 tokens, 5 ms apart = 250 ms of generation each)")
    print(
        f"  complete {len(ok)}/{n}, errors {len(errors)}, persisted {persisted}/{n}, wall {wall:.2f} s"
        + (f"; first error: {errors[0]!r}" if errors else "")
    )
    if firsts:
        print(row("time to first delta", firsts))


async def knowledge_overhead(kiln: httpx.AsyncClient, user: dict, servers: Servers, rounds: int, chunks: int) -> None:
    r = await kiln.post("/auth/login", json={"identifier": "root@example.com", "password": PASSWORD})
    sa = {"Authorization": f"Bearer {r.json()['access_token']}"}
    options = (await kiln.get("/v1/context/vectorization-options", headers=sa)).json()
    embeddings = next(p["id"] for p in options["embedding_providers"] if p["provider_key"] == "local_embeddings")
    store = next(p["id"] for p in options["vector_store_providers"] if p["provider_key"] == "embedded_vector")
    r = await kiln.post(
        "/v1/context/knowledge-bases",
        headers=sa,
        json={
            "slug": "bench",
            "display_name": "Bench",
            "backing_provider_instance_id": store,
            "vectorization": {"mode": "vanessa_embeddings", "embedding_provider_instance_id": embeddings},
            "chunking": {
                "strategy": "fixed_length",
                "config": {"unit": "tokens", "chunk_length": 120, "chunk_overlap": 20},
            },
        },
    )
    if r.status_code != 201:
        raise SystemExit(f"knowledge base refused: {r.status_code} {r.text[:300]}")
    kb = r.json()["knowledge_base"]
    # The chunks go straight into the tables (bench/genai_rag.py's loader: Zipf text over w0..w19999,
    # clustered 384-d vectors); Kiln builds its vector index from them on the first retrieval.
    print(f"4. loading {chunks} chunks into the knowledge base ...", flush=True)
    started = time.perf_counter()
    db = Database(servers.database_url)
    try:
        async with db.session() as session:
            await load_chunks(session, kb["id"], chunks, np.random.default_rng(11), generation=kb.get("generation", 1))
            await session.execute(
                update(KnowledgeBase)
                .where(KnowledgeBase.id == kb["id"])
                .values(document_count=max(1, chunks // 100), chunk_count=chunks)
            )
            await session.commit()
    finally:
        await db.dispose()
    prompt = "tokens=5 gap_ms=0 ttft_ms=20 and what about w17 w230 or w4512?"

    async def knowledge_session() -> str:
        r = await kiln.post(
            "/v1/playgrounds/sessions",
            headers=user,
            json={
                "playground_kind": "knowledge",
                "model_selection": {"model_id": "bench-local"},
                "knowledge_binding": {"knowledge_base_id": kb["id"], "top_k": 5},
            },
        )
        if r.status_code != 201:
            raise SystemExit(f"knowledge session refused: {r.status_code} {r.text[:300]}")
        return r.json()["session"]["id"]

    async with httpx.AsyncClient(base_url=str(kiln.base_url), timeout=3600) as patient:  # index build
        await kiln_stream(patient, user, await knowledge_session(), prompt)
    print(f"  loaded and indexed in {time.perf_counter() - started:.0f} s", flush=True)
    # Every round asks a question not asked before (Kiln keeps the vectors of recent queries, so a
    # repeated one skips the encoder); the repeated question is measured apart after them.
    rng = np.random.default_rng(5)
    words = rng.choice(20_000, size=(rounds + 5, 3), replace=True)
    fresh = [f"tokens=5 gap_ms=0 ttft_ms=20 and what about w{a} w{b} or w{c}?" for a, b, c in words]
    for label, prompts in (("new question each round", fresh), ("the same question again", [prompt] * (rounds + 5))):
        chat_ms, knowledge_ms = [], []
        for i, asked in enumerate(prompts):
            chat_sid, knowledge_sid = await new_session(kiln, user), await knowledge_session()
            c = (await kiln_stream(kiln, user, chat_sid, asked))[0]
            k = (await kiln_stream(kiln, user, knowledge_sid, asked))[0]
            if i >= 5:
                chat_ms.append(c)
                knowledge_ms.append(k)
        print(f"4. knowledge chat, {rounds} rounds, {label}, KB of {chunks} chunks (embedded store, local embeddings)")
        print(row("chat TTFT (baseline)", chat_ms))
        print(row("knowledge TTFT", knowledge_ms))
        print(
            row("retrieval + prompt (paired)", [k - c for k, c in zip(knowledge_ms, chat_ms, strict=True)])
            + "   goal p50 < 25 ms"
        )


@contextlib.contextmanager
def reference_relay(fake: str) -> Iterator[tuple[str, int]]:
    """(URL, pid) of the reference relay in its own process, relaying to the fake at `fake`."""
    port = free_port()
    fake_port = urlsplit(fake).port
    proc = subprocess.Popen([sys.executable, __file__, "--reference", str(port), str(fake_port)])
    try:
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def pin(fake_pid: int, others: tuple[int, ...]) -> str:
    """The fake on a CPU of its own, Kiln and this client on the rest (every thread of each).

    A diagnostic, off by default: without it a relayed token's wake-up runs Kiln on the fake's CPU
    (a loopback write wakes its reader on the writer's CPU), the fake waits for it before its next
    relative sleep, and its own rate drops. Pinned, the fake paces as in the direct runs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin-fake needs at least 2 CPUs")
    for pid, allowed in ((fake_pid, cpus[-1:]), *((other, cpus[:-1]) for other in others)):
        for task in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(task), allowed)
    return f"  pinned: the fake on CPU {cpus[-1]}, Kiln and the client on CPU {','.join(map(str, cpus[:-1]))}"


async def measure(args: argparse.Namespace) -> None:
    db, name, admin = None, "", os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    if args.pg:
        import asyncpg

        name = f"kiln_bench_chat_{uuid.uuid4().hex[:6]}"
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        db = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    try:
        async with (
            processes(db, __file__, args.profile) as servers,
            httpx.AsyncClient(base_url=servers.base, timeout=120, limits=limits) as kiln,
            httpx.AsyncClient(timeout=60) as direct,
        ):
            fake = servers.fake
            fake_pid = next(c.pid for c in psutil.Process().children() if "--fake" in c.cmdline())
            user = await setup(kiln)
            print(f"genai playground streaming, {'postgresql' if args.pg else 'sqlite'}")
            if args.pin_fake:
                print(pin(fake_pid, (servers.kiln_pid, os.getpid())))
            if "ttft" in args.only:
                await ttft(kiln, direct, user, fake, args.rounds, servers.kiln_pid)
            if "relay" in args.only:
                with reference_relay(fake) as (reference, reference_pid):
                    await wait_listening(reference)
                    pids = (servers.kiln_pid, fake_pid, reference_pid)
                    await throughput(kiln, direct, user, fake, pids, args.paced_runs, reference)
            if "concurrent" in args.only:
                await concurrent(kiln, user, args.concurrency)
            if args.kb_chunks and "knowledge" in args.only:
                await knowledge_overhead(kiln, user, servers, min(args.rounds, 100), args.kb_chunks)
    finally:
        if db:
            import asyncpg

            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--fake":
        fake_main(int(sys.argv[2]), _fake_conn)
        return
    if len(sys.argv) > 3 and sys.argv[1] == "--reference":
        reference_main(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--kb-chunks", type=int, default=100_000, help="chunks of the knowledge base (0: skip)")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--paced-runs", type=int, default=5, help="runs of the paced relay (each ~0.5 s per side)")
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default={"ttft", "relay", "concurrent", "knowledge"},
        help="sections to run, comma-separated: ttft,relay,concurrent,knowledge",
    )
    parser.add_argument("--profile", help="run Kiln under cProfile and write its stats to this file")
    parser.add_argument(
        "--pin-fake",
        action="store_true",
        help="diagnostic: the fake on a CPU of its own, Kiln and the client on the rest",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
