"""Arted: Kiln's own overhead per pipeline run, and runs/s with 50 concurrent users.

Both servers talk to the same instant fakes (tests/fakes: OpenAI-compatible LLM, ComfyUI), which
run in this process and time every request they serve (and ComfyUI's execution).

* Overhead: sequential runs against `kiln serve` (SQLite, embedded jobs, a separate process);
  per run, total latency minus the time spent inside the fake backends. Goal: p50 < 20 ms.
* Throughput: 50 users, each posting runs back to back, against Kiln and against the
  reference's synchronous design simulated: a threaded HTTP server with 8 request threads (as
  Waitress), each request doing `asyncio.run()` around blocking HTTP calls for the four stages
  and writing the recorder's files (metadata.json rewritten per entity). The simulation polls
  ComfyUI's history every 50 ms (the reference: 2 s), which favours the baseline.

    PYTHONPATH=src:. .venv/bin/python bench/arted.py [--runs 100] [--concurrent-runs 300]
        [--skip-reference] [--profile out.prof [--profile-phase sequential|concurrent]]

Server CPU per run (user + system of the server process over the phase) is printed for both;
on a shared machine it is the figure to compare, not runs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.fakes import comfyui as fake_comfy_mod  # noqa: E402
from tests.fakes import openai_llm as fake_llm_mod  # noqa: E402

INTERVALS: list[tuple[float, float]] = []
BODY = {"schema": "dada", "input_text": "Ein Hund spielt im Garten", "safety_level": "kids"}


def _timed(method):  # noqa: ANN001, ANN202
    def wrapper(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            INTERVALS.append((start, time.perf_counter()))

    return wrapper


for cls in (fake_llm_mod._Handler, fake_comfy_mod._Handler):
    cls.do_POST = _timed(cls.do_POST)
    cls.do_GET = _timed(cls.do_GET) if cls is fake_llm_mod._Handler else cls.do_GET
fake_comfy_mod.FakeComfyUI.execute = _timed(fake_comfy_mod.FakeComfyUI.execute)
_comfy_get = fake_comfy_mod._Handler.do_GET


def _comfy_get_timed(self):  # noqa: ANN001, ANN202  (the socket handler lives for the whole run: not timed)
    if self.path.startswith("/ws"):
        return _comfy_get(self)
    return _timed(_comfy_get)(self)


fake_comfy_mod._Handler.do_GET = _comfy_get_timed


def guard_or_echo(request: dict) -> str:
    system = next((m["content"] for m in request["messages"] if m["role"] == "system"), "")
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    if "safety check" in system:
        return "SAFE"
    return f"EN: {user}" if system.startswith("Translate") else f"Dada collage of {user}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_time(start: float, end: float) -> float:
    total = 0.0
    for a, b in list(INTERVALS):
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += hi - lo
    return total


# ------------------------------------------------------------------ the simulated reference
def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def _chat(llm: str, system: str, user: str) -> str:
    body = {
        "model": "fake-chat",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    return _post(f"{llm}/chat/completions", body)["choices"][0]["message"]["content"]


def reference_run(llm: str, comfy: str, out: Path, text: str) -> dict:
    async def run() -> dict:  # blocking calls inside async def, as the reference does
        run_id = str(uuid.uuid4())
        folder = out / run_id
        folder.mkdir(parents=True)
        meta: dict = {"run_id": run_id, "entities": []}

        def save(kind: str, data: bytes | str) -> None:
            name = f"{len(meta['entities']) + 1:02d}_{kind}"
            (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
            meta["entities"].append({"type": kind, "filename": name})
            (folder / "metadata.json").write_text(json.dumps(meta))

        save("input", text)
        verdict = _chat(llm, "You are the safety check", text)
        save("safety", verdict)
        interception = _chat(llm, "Task: transform", text)
        save("interception", interception)
        translated = _chat(llm, "Translate the text", interception)
        verdict = _chat(llm, "You are the safety check", translated)
        save("safety_pre_output", verdict)
        graph = {
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": translated}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 1}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": f"ref/{run_id}"}},
        }
        prompt_id = _post(f"{comfy}/prompt", {"prompt": graph, "client_id": run_id})["prompt_id"]
        while True:
            history = json.loads(_get(f"{comfy}/history/{prompt_id}"))
            if history:
                break
            time.sleep(0.05)
        item = history[prompt_id]["outputs"]["9"]["images"][0]
        data = _get(f"{comfy}/view?filename={item['filename']}&subfolder={item['subfolder']}&type=output")
        save("output_image", data)
        return {"status": "success", "run_id": run_id, "final_output": interception}

    return asyncio.run(run())


def serve_reference(port: int, llm: str, comfy: str, out: str) -> None:
    ThreadingHTTPServer.request_queue_size = 256
    slots = threading.Semaphore(8)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            with slots:
                payload = json.dumps(reference_run(llm, comfy, Path(out), body["input_text"])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


# ------------------------------------------------------------------ measurement
async def wait_ready(url: str, timeout: float = 60) -> None:
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class ServerCPU:
    """CPU seconds (user + system) a server process spends over a phase; optionally profiled."""

    def __init__(self, pid: int, profile: bool = False):
        self.proc = psutil.Process(pid)
        self.profile = profile
        self.spent = 0.0

    def __enter__(self) -> ServerCPU:
        if self.profile:
            os.kill(self.proc.pid, signal.SIGUSR1)
        self._start = sum(self.proc.cpu_times()[:2])
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = sum(self.proc.cpu_times()[:2]) - self._start
        if self.profile:
            os.kill(self.proc.pid, signal.SIGUSR2)


async def sequential(url: str, runs: int, pid: int, *, profile: bool = False) -> tuple[list[float], list[float], float]:
    """Latencies and overheads of `runs` runs after 10 warm-up runs, and the server's CPU seconds per run."""
    totals, overheads = [], []
    cpu = ServerCPU(pid, profile)
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(runs + 10):
            if i == 10:
                cpu.__enter__()
            start = time.perf_counter()
            r = await client.post(url, json=BODY)
            end = time.perf_counter()
            assert r.status_code == 200, r.text
            if i >= 10:
                totals.append(end - start)
                overheads.append(end - start - backend_time(start, end))
    cpu.__exit__()
    return totals, overheads, cpu.spent / runs


async def concurrent(url: str, users: int, runs: int) -> float:
    remaining = [runs]
    errors: list[str] = []
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def user() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                try:
                    r = await client.post(url, json=BODY)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                if r.status_code != 200:
                    errors.append(r.text[:200])

        start = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        elapsed = time.perf_counter() - start
    if errors:
        print(f"  {url}: {len(errors)} failed runs, first: {errors[0]}")
    return (runs - len(errors)) / elapsed


def ms(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrent-runs", type=int, default=300)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--profile", metavar="PATH", help="run the Kiln server under cProfile, stats to PATH")
    parser.add_argument("--profile-phase", choices=("sequential", "concurrent"), default="concurrent")
    parser.add_argument("--skip-reference", action="store_true", help="Kiln only (quick iterations: no ratio)")
    args = parser.parse_args()
    ThreadingHTTPServer.request_queue_size = 256  # 50 users: the default backlog (5) drops connections
    llm, llm_server = fake_llm_mod.start_fake_llm()
    comfy, comfy_server = fake_comfy_mod.start_fake_comfyui()
    llm.responder = guard_or_echo
    home = Path(tempfile.mkdtemp(prefix="bench-arted-"))
    port, ref_port = free_port(), free_port()
    env = {
        **os.environ,
        "KILN_HOME": str(home / "kiln"),
        "KILN_APPS": "arted",
        "KILN_LLM_URL": llm.url,
        "KILN_LLM_MODEL": "fake-chat",
        "KILN_COMFYUI_URL": comfy.url,
        "KILN_LOG_LEVEL": "warning",
        "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
    }
    launch = "from kiln.cli import app; app()"
    if args.profile:  # SIGUSR1 starts the profiler, SIGUSR2 stops it and writes the stats
        env["KILN_BENCH_PROFILE"] = str(Path(args.profile).resolve())
        launch = (
            "import cProfile, os, signal; from kiln.cli import app; p = cProfile.Profile()\n"
            "signal.signal(signal.SIGUSR1, lambda *_: p.enable())\n"
            "out = os.environ['KILN_BENCH_PROFILE']\n"
            "signal.signal(signal.SIGUSR2, lambda *_: (p.disable(), p.dump_stats(out)))\n"
            "app()"
        )
    kiln = subprocess.Popen([sys.executable, "-c", launch, "serve", "--port", str(port)], env=env)
    ref = multiprocessing.get_context("spawn").Process(
        target=serve_reference, args=(ref_port, llm.url, comfy.url, str(home / "ref")), daemon=True
    )
    ref.start()
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        kiln_url = f"http://127.0.0.1:{port}/api/schema/pipeline/execute"
        ref_url = f"http://127.0.0.1:{ref_port}/api/schema/pipeline/execute"
        profile_seq = bool(args.profile) and args.profile_phase == "sequential"
        totals, overheads, seq_cpu = await sequential(kiln_url, args.runs, kiln.pid, profile=profile_seq)
        print(
            f"Kiln sequential, {args.runs} runs: latency p50 {ms(totals, 50):.1f} ms p95 {ms(totals, 95):.1f} ms; "
            f"own overhead (minus time inside the fakes) p50 {ms(overheads, 50):.1f} ms "
            f"p95 {ms(overheads, 95):.1f} ms (goal p50 < 20 ms); server CPU per run {seq_cpu * 1000:.1f} ms"
        )
        INTERVALS.clear()
        if not args.skip_reference:
            ref_totals, ref_over, ref_seq_cpu = await sequential(ref_url, min(args.runs, 50), ref.pid)
            print(
                f"Reference simulation sequential: latency p50 {ms(ref_totals, 50):.1f} ms; "
                f"overhead p50 {ms(ref_over, 50):.1f} ms; server CPU per run {ref_seq_cpu * 1000:.1f} ms"
            )
            INTERVALS.clear()
        with ServerCPU(kiln.pid, bool(args.profile) and not profile_seq) as kiln_cpu:
            kiln_rps = await concurrent(kiln_url, args.users, args.concurrent_runs)
        cpu_per_run = kiln_cpu.spent / args.concurrent_runs * 1000
        INTERVALS.clear()
        if args.skip_reference:
            print(
                f"{args.users} concurrent users, {args.concurrent_runs} runs: Kiln {kiln_rps:.1f} runs/s "
                f"(server CPU per run: Kiln {cpu_per_run:.1f} ms)"
            )
            return
        with ServerCPU(ref.pid) as ref_cpu_phase:
            ref_rps = await concurrent(ref_url, args.users, args.concurrent_runs)
        ref_cpu = ref_cpu_phase.spent / args.concurrent_runs * 1000
        print(
            f"{args.users} concurrent users, {args.concurrent_runs} runs: Kiln {kiln_rps:.1f} runs/s, "
            f"reference simulation {ref_rps:.1f} runs/s, ratio {kiln_rps / ref_rps:.2f}x "
            f"(server CPU per run: Kiln {cpu_per_run:.1f} ms, simulation {ref_cpu:.1f} ms)"
        )
    finally:
        kiln.terminate()
        kiln.wait(timeout=30)
        ref.terminate()
        ref.join(timeout=10)
        llm_server.shutdown()
        comfy_server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
