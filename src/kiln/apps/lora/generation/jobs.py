"""Job handlers: `lora.generate` (txt2img on SDNext) and `lora.deliver` (prompt to a file or an
allowed HTTP endpoint).

A generation names its SDNext task (`force_task_id = task(kiln-<job id>)`) and polls
`/progress` while the txt2img call runs; only progress of its own task is reported (SDNext's
figure is server-global), and Kiln's own calls to one server are serialised per process so a
server that ignores task ids still reports ours. Cancel posts `/interrupt`; the call then
returns early and the job ends `cancelled` (the engine never overwrites a cancel with the late
result). Images and thumbnails go to the BlobStore.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from typing import Any

import httpx

from kiln.apps.lora.config import LoraSettings, lora_settings
from kiln.core.jobs import JobCancelled, JobContext, job_handler
from kiln.providers.sdnext import SDNextClient, SDNextError

PROGRESS_TOPIC = "lora.progress"
THUMB_SIZE = 256
_locks: dict[tuple[int, str], asyncio.Lock] = {}
_clients: dict[tuple[Any, ...], SDNextClient] = {}


def sdnext_client(cfg: LoraSettings, **kw: Any) -> SDNextClient:
    if not cfg.sdnext_url:
        raise SDNextError("SDNext backend not configured (set KILN_SDNEXT_URL)")
    password = cfg.sdnext_password.get_secret_value() if cfg.sdnext_password else None
    return SDNextClient(
        cfg.sdnext_url, username=cfg.sdnext_username, password=password, timeout=cfg.sdnext_timeout, **kw
    )


def shared_client(cfg: LoraSettings) -> SDNextClient:
    """One client (connection pool) per server, credentials and event loop, kept for the process."""
    loop = asyncio.get_running_loop()
    password = cfg.sdnext_password.get_secret_value() if cfg.sdnext_password else None
    key = (id(loop), cfg.sdnext_url, cfg.sdnext_username, password, cfg.sdnext_timeout)
    client = _clients.get(key)
    if client is None:
        for stale in [k for k in _clients if k[0] != id(loop)]:
            _clients.pop(stale, None)
        client = _clients[key] = sdnext_client(cfg)
    return client


def task_id_for(job_id: str) -> str:
    return f"task(kiln-{job_id})"


def image_key(job_id: str, index: int, thumb: bool = False) -> str:
    return f"lora/generations/{job_id}/{index}.{'thumb.jpg' if thumb else 'png'}"


def _thumbnail(data: bytes) -> tuple[bytes, int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        image.thumbnail((THUMB_SIZE, THUMB_SIZE))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue(), width, height


async def _watch(ctx: JobContext, client: SDNextClient, task: str, started: float) -> None:
    """Report this task's progress until cancelled by the caller."""
    cfg = lora_settings(ctx.kernel)
    job_id = ctx.job.id
    while True:
        await asyncio.sleep(cfg.poll_interval)
        try:
            p = await client.progress()
        except SDNextError:
            continue
        ours = p.task_id == task or (p.task_id is None or not p.task_id.startswith("task(kiln-")) and p.busy
        if not ours or not p.busy:
            continue
        step, steps = p.step, p.steps
        fraction = min(0.99, p.progress)
        message = f"step {step}/{steps}" if step is not None and steps else "generating"
        await ctx.kernel.events.publish(
            PROGRESS_TOPIC,
            {
                "job_id": job_id,
                "progress": fraction,
                "current_step": step,
                "total_steps": steps,
                "eta_seconds": p.eta_relative,
                "elapsed_seconds": round(time.monotonic() - started, 3),
            },
        )
        try:
            await ctx.progress(fraction, message)
        except JobCancelled:
            return


async def _acquire(ctx: JobContext, lock: asyncio.Lock) -> None:
    """Wait for this process's turn on the server, or for a cancel."""
    if not lock.locked() and not ctx.cancelled.is_set():
        await lock.acquire()  # free: taken at once, no waiting tasks to set up
        return
    acquire = asyncio.ensure_future(lock.acquire())
    cancelled = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({acquire, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancelled.cancel()
        if not acquire.done():
            acquire.cancel()
    if not acquire.done() or acquire.cancelled():
        raise JobCancelled("cancelled while waiting for SDNext")
    if ctx.cancelled.is_set():
        lock.release()
        raise JobCancelled("cancelled while waiting for SDNext")


async def _txt2img(ctx: JobContext, client: SDNextClient, body: dict[str, Any], task: str, started: float) -> Any:
    call = asyncio.ensure_future(client.txt2img(body))
    watcher = asyncio.ensure_future(_watch(ctx, client, task, started))
    cancelled = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({call, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        if not call.done():
            # Cancel requested while SDNext works: stop it there, then end cancelled.
            with contextlib.suppress(SDNextError):
                await asyncio.shield(client.interrupt())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(call), timeout=5)
            raise JobCancelled("cancelled during generation")
    finally:
        watcher.cancel()
        cancelled.cancel()
        if not call.done():
            call.cancel()
    return call.result()


@job_handler("lora.generate", surface="lora", max_attempts=1)
async def generate(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    cfg = lora_settings(ctx.kernel)
    job_id = ctx.job.id
    body = dict(payload["params"])
    task = task_id_for(job_id)
    body.update({"force_task_id": task, "send_images": True, "save_images": False})
    lock = _locks.setdefault((id(asyncio.get_running_loop()), cfg.sdnext_url or ""), asyncio.Lock())
    client = shared_client(cfg)
    await _acquire(ctx, lock)
    try:
        started = time.monotonic()
        result = await _txt2img(ctx, client, body, task, started)
    finally:
        lock.release()
    ctx.raise_if_cancelled()
    blobs = ctx.kernel.blobs

    async def store(index: int, data: bytes) -> list[int]:
        # The thumbnail is made (in a thread) while the image is written.
        made = asyncio.ensure_future(asyncio.to_thread(_thumbnail, data))
        try:
            await blobs.write_bytes(image_key(job_id, index), data)
        finally:
            thumb, width, height = await made
        await blobs.write_bytes(image_key(job_id, index, thumb=True), thumb)
        return [width, height]

    sizes = [await store(index, data) for index, data in enumerate(result.images)]
    images = [image_key(job_id, index) for index in range(len(result.images))]
    return {
        "status": "completed",
        "images": images,
        "sizes": sizes,
        "bytes": sum(map(len, result.images)),
        "generation_info": result.info,
        "duration_seconds": round(time.monotonic() - started, 3),
    }


@job_handler("lora.deliver", surface="lora", max_attempts=3)
async def deliver(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    mode, prompt = payload["mode"], payload["prompt"]
    params = payload.get("params") or {}
    if mode == "cli":
        template = params.get("template")
        text = template.replace("{prompt}", prompt) if isinstance(template, str) and template else prompt
        key = f"lora/deliveries/{ctx.job.id}/prompt.txt"
        info = await ctx.kernel.blobs.write_bytes(key, text.encode())
        return {"status": "ok", "detail": "prompt written", "blob_key": key, "size": info.size}
    if mode == "http":
        url = f"http://{params['host']}:{params.get('port') or 80}{params.get('path') or '/'}"
        async with httpx.AsyncClient(timeout=30.0, follow_redirects=False) as http:
            try:
                response = await http.post(url, json={"prompt": prompt})
            except httpx.HTTPError as exc:
                raise RuntimeError(f"delivery endpoint not reachable ({type(exc).__name__})") from None
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"delivery endpoint answered HTTP {response.status_code}")
        return {"status": response.status_code, "detail": response.text[:2000]}
    raise RuntimeError(f"unknown delivery mode {mode!r}")
