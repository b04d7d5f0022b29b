"""Directory import: registration from headers (`lora.scan`), hashing and duplicates after it
(`lora.hash`), the search index of bulk-written rows, re-scans, hostile files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
from sqlalchemy import select, update

from kiln.apps.lora.library import hashing, scan
from kiln.apps.lora.library.metadata import FIRST_READ, InvalidAdapterFile, read_facts
from kiln.apps.lora.models import Adapter
from tests.apps.lora.kit import configure, create, write_lora
from tests.apps.lora.test_library import _wait_scan


async def _scan(client, **body: object) -> dict:
    started = await client.post("/v1/adapters/scan", json=body)
    assert started.status_code == 202, started.text
    return (await _wait_scan(client, started.json()["job_id"]))["result"]


async def _scan_and_hash(client, **body: object) -> tuple[dict, dict | None]:
    scanned = await _scan(client, **body)
    if scanned["hash_job_id"] is None:
        return scanned, None
    return scanned, (await _wait_scan(client, scanned["hash_job_id"]))["result"]


async def _unhash(app, file_path: Path) -> None:
    """Put an adapter back in the waiting-for-hash state (what a scan leaves behind)."""
    async with app.state.kernel.db.session() as session:
        await session.execute(
            update(Adapter).where(Adapter.file_path == str(file_path)).values(primary_file_sha256=None)
        )
        await session.commit()


async def _hash(app, client) -> dict:
    job = await app.state.kernel.jobs.submit("lora.hash", {})
    return (await _wait_scan(client, job.id))["result"]


async def _search(client, term: str) -> list[str]:
    body = (await client.get("/v1/adapters", params={"search": term})).json()
    assert body["filtered"] == len(body["items"])
    return sorted(a["name"] for a in body["items"])


async def test_search_index_follows_bulk_import_and_refresh(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    for name in ("inkwash", "watercolor", "pixelart"):
        write_lora(lora_dir / f"{name}_v1.safetensors", output_name=name)
    scanned, hashed = await _scan_and_hash(client)
    assert scanned["imported"] == 3 and hashed is not None and hashed["hashed"] == 3
    assert await _search(client, "inkwash") == ["inkwash"]
    assert await _search(client, "_v1.safe") == ["inkwash", "pixelart", "watercolor"]
    # A refresh that brings new trigger words re-indexes the adapter once (no stale or double rows).
    (lora_dir / "inkwash_v1.civitai.info").write_text(json.dumps({"trainedWords": ["zebra stripes"]}))
    again, _ = await _scan_and_hash(client)
    assert again["updated"] == 3 and again["imported"] == 0
    assert await _search(client, "zebra") == ["inkwash"]
    assert await _search(client, "inkwash") == ["inkwash"]
    # The bulk path left the triggers on: an adapter created afterwards is indexed by them.
    extra = write_lora(lora_dir / "other" / "charcoal.safetensors")
    await create(client, extra, "charcoal sketch")
    assert await _search(client, "charcoal") == ["charcoal sketch"]
    assert (await client.get("/v1/adapters")).json()["total"] == 4


async def test_scan_in_many_small_batches(client, app, lora_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches end when their read time is spent (one file each here): every batch is its own
    transaction with its own search-index fill, and progress advances per batch."""
    monkeypatch.setattr(scan, "READ_SECONDS", 0.0)
    configure(app, lora_dir)
    for i in range(5):
        write_lora(lora_dir / f"batch_{i}.safetensors", output_name=f"batchy{i}")
    (lora_dir / "junk.safetensors").write_bytes(b"junk")
    result = await _scan(client)
    assert result["imported"] == 5 and result["invalid"] == 1 and result["to_hash"] == 5
    assert await _search(client, "batchy") == [f"batchy{i}" for i in range(5)]
    assert await _search(client, "batchy3") == ["batchy3"]


async def test_hash_batches_are_bounded_by_bytes(client, app, lora_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashing, "HASH_BATCH_BYTES", 1)  # one file per batch
    configure(app, lora_dir)
    paths = [write_lora(lora_dir / f"h{i}.safetensors", output_name=f"h{i}") for i in range(3)]
    _, hashed = await _scan_and_hash(client)
    assert hashed is not None and hashed["hashed"] == 3 and hashed["to_hash"] == 3
    items = (await client.get("/v1/adapters")).json()["items"]
    assert {a["primary_file_sha256"] for a in items} == {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


async def test_rescan_keeps_user_tags_and_rehashes_only_changed_files(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    path = write_lora(lora_dir / "ink.safetensors", output_name="ink")
    write_lora(lora_dir / "wash.safetensors", output_name="wash")
    await _scan_and_hash(client)
    adapters = {a["name"]: a for a in (await client.get("/v1/adapters")).json()["items"]}
    patched = await client.patch(f"/v1/adapters/{adapters['ink']['id']}", json={"tags": ["Mine"]})
    assert patched.status_code == 200
    unchanged, hashed = await _scan_and_hash(client)
    assert unchanged["updated"] == 2 and unchanged["to_hash"] == 0 and hashed is None
    ink = (await client.get(f"/v1/adapters/{adapters['ink']['id']}")).json()["adapter"]
    assert ink["tags"] == ["Mine"] and ink["primary_file_sha256"] == adapters["ink"]["primary_file_sha256"]
    assert (await client.get("/v1/adapters", params={"tags": "mine"})).json()["filtered"] == 1
    write_lora(path, output_name="ink", rank=16)  # the file changes: size and mtime
    changed, hashed = await _scan_and_hash(client)
    assert changed["to_hash"] == 1 and hashed is not None and hashed["hashed"] == 1
    ink = (await client.get(f"/v1/adapters/{adapters['ink']['id']}")).json()["adapter"]
    assert ink["primary_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ink["network_dim"] == 16 and ink["tags"] == ["Mine"]


async def test_hash_job_keeps_edited_duplicates_and_skips_changed_files(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    original = write_lora(lora_dir / "a.safetensors", output_name="style")
    await _scan_and_hash(client)
    copy = lora_dir / "b.safetensors"
    shutil.copyfile(original, copy)
    registered = await create(client, copy, "my copy")
    assert (await client.patch(f"/v1/adapters/{registered['id']}", json={"weight": 0.5})).status_code == 200
    await _unhash(app, copy)
    result = await _hash(app, client)
    # Edited since it was registered: kept (and hashed), reported as a duplicate.
    assert result["duplicates"] == 1 and result["removed"] == 0 and result["hashed"] == 1
    assert result["duplicate_files"][0]["file"] == "b.safetensors"
    assert result["duplicate_files"][0]["removed"] is False
    kept = (await client.get(f"/v1/adapters/{registered['id']}")).json()["adapter"]
    assert kept["primary_file_sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    # A file that changed between the scan and the hash is left for the next scan.
    await _unhash(app, original)
    with open(original, "ab") as fh:
        fh.write(b"\0" * 16)
    result = await _hash(app, client)
    assert result["failed"] == 1 and result["hashed"] == 0 and "changed since the scan" in result["errors"][0]["error"]
    async with app.state.kernel.db.session() as session:
        assert await session.scalar(select(Adapter.primary_file_sha256).where(Adapter.name == "style")) is None
    rescanned, hashed = await _scan_and_hash(client)
    assert rescanned["to_hash"] == 1 and hashed is not None and hashed["hashed"] == 1


async def test_hash_job_refuses_a_symlink_moved_out_of_the_roots(client, app, lora_dir: Path, tmp_path: Path) -> None:
    configure(app, lora_dir)
    inside = write_lora(lora_dir / "real" / "x.safetensors")
    link = lora_dir / "link.safetensors"
    os.symlink(inside, link)
    scanned, hashed = await _scan_and_hash(client)
    assert scanned["imported"] == 2 and hashed is not None and hashed["duplicates"] == 1
    # The link was a duplicate of the real file (path order: link < real/x): it was removed again.
    outside = tmp_path / "secret.safetensors"
    shutil.copyfile(inside, outside)
    async with app.state.kernel.db.session() as session:
        names = (await session.scalars(select(Adapter.file_path))).all()
    assert names == [str(link)]
    await _unhash(app, link)
    link.unlink()
    os.symlink(outside, link)
    result = await _hash(app, client)
    assert result["failed"] == 1 and "outside" in result["errors"][0]["error"]


async def test_scan_reports_fifo_and_junk_as_invalid(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    write_lora(lora_dir / "good.safetensors")
    os.mkfifo(lora_dir / "pipe.safetensors")  # opening it for reading would block a naive reader
    (lora_dir / "short.safetensors").write_bytes(struct.pack("<Q", 100) + b"{}")
    result = await _scan(client)
    assert result["imported"] == 1 and result["invalid"] == 2
    errors = {e["file"]: e["error"] for e in result["errors"]}
    assert "not a regular file" in errors["pipe.safetensors"]
    assert "out of range" in errors["short.safetensors"]


def _raw_file(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    "entry",
    [
        {"dtype": "F16", "shape": [2], "data_offsets": [0, 5]},  # past the data
        {"dtype": "F16", "shape": [2], "data_offsets": [2, 1]},  # reversed
        {"dtype": "F16", "shape": [2], "data_offsets": [0.0, 4]},  # not integers
        {"dtype": "F16", "shape": [2], "data_offsets": [True, 4]},
        {"dtype": "F16", "shape": [2], "data_offsets": [0, 2, 4]},
        {"dtype": "F16", "shape": [2]},
        [0, 4],
        "x",
    ],
)
def test_bad_tensor_entries_are_refused(tmp_path: Path, entry: object) -> None:
    path = _raw_file(tmp_path / "x.safetensors", {"__metadata__": {"a": "b"}, "w": entry}, b"\0" * 4)
    with pytest.raises(InvalidAdapterFile, match="bad entry for tensor 'w'"):
        read_facts(path)


def test_large_header_and_hash_across_reads(tmp_path: Path) -> None:
    """A header longer than the first read (an SDXL LoRA's can be 300 KB+) is read whole, and
    the sha256 covers the bytes of the first read and the rest."""
    names = {
        f"lora_unet_block_{i:05d}.lora_down.weight": {"dtype": "F16", "shape": [1, 1], "data_offsets": [0, 2]}
        for i in range(FIRST_READ // 60)
    }
    path = _raw_file(tmp_path / "big.safetensors", {"__metadata__": {"ss_network_dim": "1"}, **names}, os.urandom(3))
    assert path.stat().st_size > FIRST_READ
    facts = read_facts(path)
    assert facts.tensor_count == len(names) and facts.metadata == {"ss_network_dim": "1"}
    assert facts.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_facts(path, sha256=False).sha256 is None


def test_find_files_lists_folders_without_a_stat_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing says what each entry is: no stat per file (a walk by names plus `islink`
    per file cost more than a tiny file's header read). Subfolders only when recursive,
    symlinked folders never entered, symlinked files only when they resolve inside a root."""
    root, outside = tmp_path / "loras", tmp_path / "outside"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    names = ("a.safetensors", "B.SAFETENSORS", "a.json", "notes.txt", "sub/c.safetensors", "sub/deeper/d.safetensors")
    for name in names:
        (root / name).write_bytes(b"x")
    (outside / "o.safetensors").write_bytes(b"x")
    os.symlink(outside / "o.safetensors", root / "out.safetensors")
    os.symlink(root / "a.safetensors", root / "sub" / "in.safetensors")
    os.symlink(outside, root / "linked_dir")
    cfg = scan.LoraSettings(_env_file=None, dir=root)  # type: ignore[call-arg]
    stats: list[str] = []
    real_stat, real_lstat = os.stat, os.lstat
    monkeypatch.setattr(os, "lstat", lambda p, *a, **k: stats.append(str(p)) or real_lstat(p, *a, **k))
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k))

    found = scan.find_files(cfg, root, recursive=True)
    relative = [os.path.relpath(path, root) for path, _ in found]
    assert relative == [
        "B.SAFETENSORS",
        "a.safetensors",
        "sub/c.safetensors",
        "sub/deeper/d.safetensors",
        "sub/in.safetensors",
    ]
    siblings = dict(found)[str(root / "a.safetensors")]
    assert siblings >= {"a.safetensors", "a.json", "notes.txt"} and "sub" not in siblings
    # Only symlinks are looked at beyond their listing (resolving them; a.safetensors is a target).
    assert stats and not any(p.endswith(("B.SAFETENSORS", "c.safetensors", "d.safetensors", ".json")) for p in stats)

    flat = scan.find_files(cfg, root, recursive=False)
    assert [os.path.relpath(path, root) for path, _ in flat] == ["B.SAFETENSORS", "a.safetensors"]
