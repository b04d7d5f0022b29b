"""An upload cut off by `kill -9` of `kiln serve` leaves a `.part` file and a PENDING media item;
the next start removes the first, fails the second, and says so in its log."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from kiln.apps.media.models import MediaItem
from kiln.core.kernel import Kernel
from tests.apps.media.mediakit import PASSWORD
from tests.conftest import make_settings
from tests.core.test_processes import ROOT, _env, _free_port, _kill, _spawn, _wait_http


def _parts(home: Path) -> list[Path]:
    return list((home / "blobs").rglob(".upload-*.part"))


async def test_start_removes_partial_blobs_and_reports(tmp_path: Path, db_url: str):
    settings = make_settings(tmp_path / "home", db_url)
    left = tmp_path / "home" / "blobs" / "a" / "b" / ".upload-x1.part"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half")
    kept = left.parent / "whole"
    kept.write_bytes(b"blob")
    kernel = Kernel(settings)
    await kernel.start("serve")
    try:
        assert not left.exists() and kept.exists()
        assert kernel.startup_report["engine.partial_blobs"] == 1
    finally:
        await kernel.stop()


@pytest.mark.slow
async def test_upload_cut_by_kill_9_is_cleaned_at_next_start(tmp_path: Path, db_url: str):
    home, log = tmp_path / "home", tmp_path / "serve.log"
    port = _free_port()
    env = _env(
        home,
        db_url,
        KILN_PORT=str(port),
        KILN_APPS="media",
        PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        KILN_LOG_LEVEL="info",
    )
    base = f"http://127.0.0.1:{port}"
    first = _spawn(["serve"], env, log)
    try:
        await _wait_http(port, first, log)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            user = {"email": "cut@example.com", "password": PASSWORD}
            assert (await http.post("/api/auth/signup", json=user)).status_code == 201
            assert (await http.post("/api/auth/login", json=user)).status_code == 200
            boundary = "kilnboundary"

            async def body():
                yield (
                    f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
                    "Content-Type: image/jpeg\r\n\r\n"
                ).encode()
                for _ in range(600):  # 60 s of trickling: the server dies long before
                    yield b"\xff" * 65536
                    await asyncio.sleep(0.1)

            upload = asyncio.ensure_future(
                http.post(
                    "/api/upload/files",
                    content=body(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                )
            )
            deadline = time.monotonic() + 20
            while not _parts(home):
                assert time.monotonic() < deadline and not upload.done(), "no .part file appeared"
                await asyncio.sleep(0.05)
            _kill(first)
            with pytest.raises(httpx.TransportError):
                await upload
    finally:
        _kill(first)
    assert _parts(home)
    client = Kernel(make_settings(home, db_url))
    await client.start("client")
    try:
        async with client.db.session() as session:
            assert [i.status for i in await session.scalars(select(MediaItem))] == ["PENDING"]
        second = _spawn(["serve"], env, log)
        try:
            await _wait_http(port, second, log)
            assert not _parts(home)
            async with client.db.session() as session:
                item = (await session.scalars(select(MediaItem))).one()
            assert item.status == "FAILED" and item.error == "upload did not complete"
            text = log.read_text()
            assert "engine.partial_blobs: 1" in text and "media.interrupted_uploads: 1" in text, text[-2000:]
        finally:
            second.terminate()
            second.wait(timeout=15)
    finally:
        await client.stop()
