"""safe_join and range_response, through a tiny Starlette app on httpx's ASGI transport."""

from __future__ import annotations

import hashlib
import os
import tracemalloc

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from kiln.core.blobs import LocalBlobStore, UnsafePathError
from kiln.core.files import parse_range, range_response, safe_join

DATA = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable modulo 256


# --- safe_join ------------------------------------------------------------------------------


def test_safe_join_inside(tmp_path):
    (tmp_path / "a").mkdir()
    assert safe_join(tmp_path, "a/b.txt") == (tmp_path / "a" / "b.txt").resolve()
    assert safe_join(tmp_path, "a/../c.txt") == (tmp_path / "c.txt").resolve()
    assert safe_join(str(tmp_path), "") == tmp_path.resolve()


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../x", "..", "a\\..\\..\\x", "a\x00b", "//etc"])
def test_safe_join_refuses(tmp_path, bad):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "root", bad)


def test_safe_join_refuses_symlink_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "passwd").symlink_to("/etc/passwd")
    for bad in ["link/x", "link", "passwd"]:
        with pytest.raises(UnsafePathError):
            safe_join(root, bad)
    assert issubclass(UnsafePathError, ValueError)


# --- parse_range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=100-", False),
        ("bytes=-0", False),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-5", None),
        ("bytes=-", None),
        ("BYTES = 1 - 2", (1, 2)),
    ],
)
def test_parse_range(header, want):
    assert parse_range(header, 100) == want


# --- range_response over HTTP ---------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    file_path = tmp_path / "data.bin"
    file_path.write_bytes(DATA)
    store = LocalBlobStore(tmp_path / "blobs")

    async def from_file(request: Request):
        return await range_response(request, file_path, "application/octet-stream", filename="data.bin")

    async def from_blob(request: Request):
        try:
            return await range_response(request, (store, request.path_params["key"]), "video/mp4")
        except FileNotFoundError:
            return PlainTextResponse("missing", status_code=404)

    app = Starlette(
        routes=[
            Route("/file", from_file, methods=["GET", "HEAD"]),
            Route("/blob/{key:path}", from_blob, methods=["GET", "HEAD"]),
        ]
    )
    return app, store, file_path


@pytest.fixture(params=["file", "blob"])
async def target(request, served):
    app, store, _ = served
    await store.write_bytes("v/clip.mp4", DATA)
    url = "/file" if request.param == "file" else "/blob/v/clip.mp4"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield client, url


async def test_full_200(target):
    client, url = target
    r = await client.get(url)
    assert r.status_code == 200 and r.content == DATA
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(DATA))
    assert "content-range" not in r.headers
    assert r.headers["etag"].startswith('"') and r.headers["last-modified"].endswith("GMT")


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=300-5000", 300, 1023),
        ("bytes=512-512", 512, 512),
    ],
)
async def test_partial_206(target, header, start, end):
    client, url = target
    r = await client.get(url, headers={"Range": header})
    assert r.status_code == 206
    assert r.content == DATA[start : end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
async def test_unsatisfiable_416(target, header):
    client, url = target
    r = await client.get(url, headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    assert r.content == b""


async def test_malformed_or_multi_range_serves_200(target):
    client, url = target
    for header in ["bytes=9-3", "bytes=0-1,4-5", "lines=1-2"]:
        r = await client.get(url, headers={"Range": header})
        assert r.status_code == 200 and r.content == DATA


async def test_conditional_requests(target):
    client, url = target
    first = await client.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
    assert (await client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    fresh = await client.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == DATA[:4]
    stale = await client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == DATA


async def test_head_sends_headers_only(target):
    client, url = target
    r = await client.head(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == b""
    assert r.headers["content-length"] == "10"
    assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"


async def test_headers_specific_to_source(served):
    app, store, _ = served
    info = await store.write_bytes("v/clip.mp4", DATA)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        f = await client.get("/file")
        b = await client.get("/blob/v/clip.mp4")
        missing = await client.get("/blob/v/none.mp4")
    assert f.headers["content-disposition"] == 'attachment; filename="data.bin"'
    assert f.headers["content-type"] == "application/octet-stream"
    assert b.headers["content-type"] == "video/mp4"
    assert b.headers["etag"] == f'"{info.sha256}"'
    assert missing.status_code == 404


async def test_non_ascii_filename(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")

    async def endpoint(request: Request):
        return await range_response(request, path, "text/plain", filename='résumé "final"\r\n.txt')

    app = Starlette(routes=[Route("/", endpoint)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/")
    cd = r.headers["content-disposition"]
    assert "filename*=utf-8''r%C3%A9sum%C3%A9%20%22final%22%0D%0A.txt" in cd
    assert "\r" not in cd and "\n" not in cd


async def test_missing_path_raises(tmp_path):
    scope = {"type": "http", "method": "GET", "headers": [], "path": "/", "query_string": b""}
    with pytest.raises(FileNotFoundError):
        await range_response(Request(scope), tmp_path / "nope.bin", "text/plain")
    with pytest.raises(FileNotFoundError):
        await range_response(Request(scope), tmp_path, "text/plain")  # a directory is not a file


async def test_large_file_streams_in_chunks(tmp_path):
    """A 64 MB file: the response body is produced in small chunks, never read whole."""
    path = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as fh:
        for _ in range(64):
            fh.write(block)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [(b"range", b"bytes=1048576-")],
    }
    # httpx's ASGITransport buffers whole bodies, so the body iterator is consumed directly here.
    response = await range_response(Request(scope), path, "application/octet-stream")
    assert response.status_code == 206
    got, biggest = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        async for piece in response.body_iterator:
            biggest = max(biggest, len(piece))
            got.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == hashlib.sha256(block * 63).hexdigest()
    assert biggest <= 1024 * 1024
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes"
