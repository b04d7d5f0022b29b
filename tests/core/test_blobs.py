"""One behavioural suite, run against LocalBlobStore and S3BlobStore (moto on loopback)."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest

from kiln.core.blobs import (
    BlobStore,
    BlobTooLarge,
    LocalBlobStore,
    S3BlobStore,
    UnsafePathError,
    blob_store_from_settings,
)
from kiln.settings import Settings
from tests.fakes.s3 import FakeS3, fake_s3_server  # noqa: F401  (session fixture)

MB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def store(store_kind, tmp_path, request) -> BlobStore:
    if store_kind == "local":
        return LocalBlobStore(tmp_path / "blobs")
    fake: FakeS3 = request.getfixturevalue("fake_s3_server")
    # A small part size lets a few MB exercise the real multipart path.
    return S3BlobStore(
        fake.create_bucket(),
        "kiln/test",
        endpoint_url=fake.endpoint_url,
        region=fake.region,
        access_key_id=fake.access_key_id,
        secret_access_key=fake.secret_access_key,
        part_size=5 * MB,
    )


def pattern(i: int, size: int) -> bytes:
    """Deterministic, non-repeating-per-chunk data so misplaced chunks change the hash."""
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield pattern(i, size)


def expected(count: int, size: int) -> bytes:
    return b"".join(pattern(i, size) for i in range(count))


async def test_write_bytes_roundtrip_and_stat(store):
    info = await store.write_bytes("a/b/c.txt", b"hello world")
    assert (info.key, info.size) == ("a/b/c.txt", 11)
    assert info.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert await store.read_bytes("a/b/c.txt") == b"hello world"
    stat = await store.stat("a/b/c.txt")
    assert stat is not None and stat.size == 11 and stat.sha256 == info.sha256
    assert stat.modified is not None
    assert await store.exists("a/b/c.txt")
    assert not await store.exists("a/b/missing.txt")
    assert await store.stat("a/b/missing.txt") is None


async def test_overwrite_replaces_content(store):
    await store.write_bytes("x.bin", b"first version, longer")
    await store.write_bytes("x.bin", b"second")
    assert await store.read_bytes("x.bin") == b"second"
    assert (await store.stat("x.bin")).size == 6


async def test_write_stream_multipart_sha_and_size(store):
    # 3 x 3 MB crosses the 5 MB part size, so S3 takes the multipart path.
    info = await store.write_stream("up/big.bin", chunks(3, 3 * MB))
    data = expected(3, 3 * MB)
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert (await store.stat("up/big.bin")).size == len(data)
    got = hashlib.sha256()
    async for chunk in store.read_stream("up/big.bin"):
        assert len(chunk) <= 16 * MB
        got.update(chunk)
    assert got.hexdigest() == info.sha256


async def test_small_stream_records_sha_for_stat(store):
    info = await store.write_stream("s/small.bin", chunks(4, 1000))
    assert info.sha256 == hashlib.sha256(expected(4, 1000)).hexdigest()
    assert (await store.stat("s/small.bin")).sha256 == info.sha256


async def test_empty_blob(store):
    info = await store.write_stream("e/empty", chunks(0, 1))
    assert info.size == 0 and info.sha256 == hashlib.sha256(b"").hexdigest()
    assert await store.read_bytes("e/empty") == b""


@pytest.mark.parametrize(
    ("start", "end", "sl"),
    [
        (0, 10, slice(0, 10)),
        (5, None, slice(5, None)),
        (None, 7, slice(0, 7)),
        (90, 500, slice(90, 100)),
        (100, None, slice(100, 100)),
        (150, 200, slice(0, 0)),
        (3, 3, slice(3, 3)),
    ],
)
async def test_ranged_reads(store, start, end, sl):
    data = bytes(range(100))
    await store.write_bytes("r/data.bin", data)
    got = b"".join([c async for c in store.read_stream("r/data.bin", start, end)])
    assert got == data[sl]


async def test_ranged_read_across_parts(store):
    await store.write_stream("r/big.bin", chunks(3, 3 * MB))
    data = expected(3, 3 * MB)
    start, end = 3 * MB - 17, 6 * MB + 5
    got = b"".join([c async for c in store.read_stream("r/big.bin", start, end)])
    assert got == data[start:end]


async def test_read_missing_raises(store):
    with pytest.raises(FileNotFoundError):
        await store.read_bytes("nope/missing.bin")
    with pytest.raises(FileNotFoundError):
        [c async for c in store.read_stream("nope/missing.bin", 0, 5)]


async def test_max_bytes_refused_and_nothing_left(store, store_kind, tmp_path, request):
    await store.write_bytes("keep/existing.bin", b"old")
    with pytest.raises(BlobTooLarge):
        await store.write_stream("lim/too-big.bin", chunks(4, 2 * MB), max_bytes=5 * MB)
    with pytest.raises(BlobTooLarge):  # an existing blob under the same key survives intact
        await store.write_stream("keep/existing.bin", chunks(4, 2 * MB), max_bytes=5 * MB)
    assert not await store.exists("lim/too-big.bin")
    assert await store.read_bytes("keep/existing.bin") == b"old"
    if store_kind == "local":
        left = sorted(str(p.relative_to(tmp_path / "blobs")) for p in (tmp_path / "blobs").rglob("*"))
        assert left == ["keep", "keep/existing.bin"]  # no temp file, no empty "lim" directory
    else:
        fake: FakeS3 = request.getfixturevalue("fake_s3_server")
        assert fake.keys(store.bucket) == ["kiln/test/keep/existing.bin"]
        uploads = fake.client().list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        assert uploads == []  # the multipart upload was aborted, not left dangling


async def test_max_bytes_exact_limit_is_allowed(store):
    info = await store.write_stream("lim/exact.bin", chunks(2, 1000), max_bytes=2000)
    assert info.size == 2000


async def test_failing_source_leaves_nothing(store, store_kind, tmp_path):
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * MB
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.write_stream("broken/upload.bin", broken())
    assert not await store.exists("broken/upload.bin")
    if store_kind == "local":
        assert list((tmp_path / "blobs").rglob("*")) == []


@pytest.mark.parametrize(
    "key", ["../x", "/etc/passwd", "a/../../x", "a/../b", "", "a//b", "./a", "a/", "a\\b", "a\x00b", ".."]
)
async def test_unsafe_keys_refused(store, key):
    with pytest.raises(UnsafePathError):
        await store.write_bytes(key, b"x")
    with pytest.raises(UnsafePathError):
        await store.stat(key)
    with pytest.raises(UnsafePathError):
        [c async for c in store.read_stream(key)]
    assert issubclass(UnsafePathError, ValueError)


async def test_delete_and_delete_prefix(store):
    for key in ["p/one.txt", "p/sub/two.txt", "p/sub/deeper/three.txt", "pp/other.txt", "px.txt"]:
        await store.write_bytes(key, key.encode())
    assert await store.delete("p/one.txt") is True
    assert await store.delete("p/one.txt") is False
    assert await store.delete_prefix("p/") == 2
    assert not await store.exists("p/sub/two.txt")
    assert not await store.exists("p/sub/deeper/three.txt")
    # Segment-based: "p" must not take "pp/..." or "px.txt" with it.
    assert await store.read_bytes("pp/other.txt") == b"pp/other.txt"
    assert await store.read_bytes("px.txt") == b"px.txt"
    assert await store.delete_prefix("nothing/here") == 0
    with pytest.raises(UnsafePathError):
        await store.delete_prefix("")
    with pytest.raises(UnsafePathError):
        await store.delete_prefix("../")


async def test_local_path_and_presigned_url(store, store_kind):
    await store.write_bytes("dl/file.txt", b"download me")
    if store_kind == "local":
        path = store.local_path("dl/file.txt")
        assert path is not None and path.read_bytes() == b"download me"
        assert await store.presigned_url("dl/file.txt") is None
    else:
        assert store.local_path("dl/file.txt") is None
        url = await store.presigned_url("dl/file.txt", expires_seconds=60)
        assert "X-Amz-Signature" in url and "X-Amz-Expires=60" in url
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200 and response.content == b"download me"


# --- local-only behaviour ---------------------------------------------------------------


async def test_local_symlink_escaping_root_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store = LocalBlobStore(tmp_path / "blobs")
    (tmp_path / "blobs" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "blobs" / "file-link").symlink_to(outside / "secret.txt")
    for key in ["link/secret.txt", "file-link", "link/new.txt"]:
        with pytest.raises(UnsafePathError):
            await store.read_bytes(key)
        with pytest.raises(UnsafePathError):
            await store.write_bytes(key, b"pwned")
        with pytest.raises(UnsafePathError):
            store.local_path(key)
    with pytest.raises(UnsafePathError):
        await store.delete_prefix("link")
    assert (outside / "secret.txt").read_text() == "secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_local_symlink_inside_root_is_allowed(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    await store.write_bytes("real/a.txt", b"inside")
    (tmp_path / "blobs" / "alias").symlink_to(tmp_path / "blobs" / "real", target_is_directory=True)
    assert await store.read_bytes("alias/a.txt") == b"inside"


async def test_local_large_stream_keeps_memory_bounded(tmp_path):
    """200 MB in 1 MB chunks: Python allocations stay at a few chunks, RSS does not grow by the payload."""
    import psutil

    store = LocalBlobStore(tmp_path / "blobs")
    proc = psutil.Process()
    chunk = os.urandom(MB)
    want = hashlib.sha256()
    peak_rss = [proc.memory_info().rss]

    async def source() -> AsyncIterator[bytes]:
        for i in range(200):
            # Vary the chunk cheaply so a write that drops or repeats chunks changes the hash.
            piece = i.to_bytes(4, "big") + chunk[4:]
            want.update(piece)
            if i % 20 == 0:
                peak_rss.append(proc.memory_info().rss)
            yield piece

    base_rss = proc.memory_info().rss
    tracemalloc.start()
    try:
        info = await store.write_stream("big/200mb.bin", source())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 200 * MB
    assert info.sha256 == want.hexdigest()
    assert peak < 16 * MB, f"traced peak {peak / MB:.1f} MB"
    assert max(peak_rss) - base_rss < 64 * MB
    assert store.local_path("big/200mb.bin").stat().st_size == 200 * MB

    got = hashlib.sha256()
    tracemalloc.start()
    try:
        async for piece in store.read_stream("big/200mb.bin"):
            got.update(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == info.sha256
    assert peak < 16 * MB


# --- factory ------------------------------------------------------------------------------


def test_factory_local_default(tmp_path):
    store = blob_store_from_settings(Settings(home=tmp_path, blob_url=None))
    assert isinstance(store, LocalBlobStore)
    assert store.root == (tmp_path / "blobs").resolve() and store.root.is_dir()


async def test_factory_s3(fake_s3_server, tmp_path):  # noqa: F811
    bucket = fake_s3_server.create_bucket()
    store = blob_store_from_settings(
        Settings(
            home=tmp_path,
            blob_url=f"s3://{bucket}/some/prefix/",
            s3_endpoint_url=fake_s3_server.endpoint_url,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    )
    assert isinstance(store, S3BlobStore)
    await store.write_bytes("k.txt", b"v")
    assert fake_s3_server.keys(bucket) == ["some/prefix/k.txt"]


def test_factory_rejects_unknown_scheme(tmp_path):
    with pytest.raises(ValueError, match="unsupported"):
        blob_store_from_settings(Settings(home=tmp_path, blob_url="ftp://host/x"))
