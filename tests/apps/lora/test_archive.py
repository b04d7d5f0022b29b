"""Export streamed as ZIP, import validated (hostile archives refused), backups with restore."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.apps.lora.kit import configure, create, write_lora


async def _export(client, prefix: str = "/v1", **config: object) -> zipfile.ZipFile:
    response = await client.post(f"{prefix}/export", json=config)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"].startswith("attachment; filename=lora_export_")
    return zipfile.ZipFile(io.BytesIO(response.content))


def _upload(data: bytes, name: str = "a.zip", config: dict | None = None) -> dict:
    return {"files": [("files", (name, data, "application/zip"))], "data": {"config": json.dumps(config or {})}}


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_export_import_round_trip(client, app, lora_dir: Path, prefix: str) -> None:
    configure(app, lora_dir)
    path = write_lora(lora_dir / "sub" / "ink.safetensors", output_name="inkwash", tags={"d": {"ink": 3}})
    (lora_dir / "sub" / "ink.json").write_text(json.dumps({"activation text": "ink wash"}))
    adapter = await create(client, path, "Ink", tags=["Style"], weight=0.7)
    estimate = (await client.post(f"{prefix}/export/estimate", json={})).json()
    assert estimate["bytes"] > path.stat().st_size and estimate["size"].endswith("KB")
    archive = await _export(client, prefix)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["adapter_count"] == 1 and manifest["adapters"][0]["id"] == adapter["id"]
    files = manifest["adapters"][0]["files"]
    assert {f["kind"] for f in files} == {"primary", "metadata"}
    assert str(lora_dir) not in archive.read("manifest.json").decode()  # no host paths
    primary = next(f for f in files if f["kind"] == "primary")
    assert archive.read(primary["archive_path"]) == path.read_bytes()
    data = await client.post(f"{prefix}/export", json={})
    assert (await client.delete(f"{prefix}/adapters/{adapter['id']}")).status_code == 204
    dry = (await client.post(f"{prefix}/import", **_upload(data.content, config={"mode": "dry-run"}))).json()
    assert dry["results"][0]["status"] == "validated" and (await client.get(f"{prefix}/adapters")).json()["total"] == 0
    res = (await client.post(f"{prefix}/import", **_upload(data.content))).json()
    assert res["success"] and res["results"][0]["created"] == 1, res
    again = (await client.get(f"{prefix}/adapters")).json()["items"][0]
    assert again["name"] == "Ink" and again["weight"] == 0.7 and again["tags"] == ["Style"]
    assert again["alias"] == "inkwash" and again["activation_text"] == "ink wash"
    assert Path(again["file_path"]).read_bytes() == path.read_bytes()
    assert Path(again["file_path"]).is_relative_to(lora_dir / "imports")
    skipped = (await client.post(f"{prefix}/import", **_upload(data.content))).json()
    assert skipped["results"][0]["adapters"][0]["status"] == "skipped"
    renamed = (
        await client.post(f"{prefix}/import", **_upload(data.content, config={"conflict_resolution": "rename"}))
    ).json()
    assert renamed["results"][0]["adapters"][0]["name"] == "Ink (2)"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return out.getvalue()


def _manifest(entry_id: str = "a1", meta_path: str | None = None, archive_path: str | None = None) -> bytes:
    primary = {
        "kind": "primary",
        "name": "x.safetensors",
        "archive_path": archive_path or f"adapters/{entry_id}/files/0_x.safetensors",
    }
    entry = {"id": entry_id, "metadata_path": meta_path or f"adapters/{entry_id}/metadata.json", "files": [primary]}
    return json.dumps({"adapters": [entry]}).encode()


async def test_hostile_archives(client, app, lora_dir: Path, tmp_path: Path) -> None:
    configure(app, lora_dir, max_import_members=50)
    good_file = write_lora(tmp_path / "x.safetensors").read_bytes()
    meta = json.dumps({"name": "x"}).encode()
    cases = {
        "traversal": _zip({"../evil.txt": b"x", "manifest.json": _manifest()}),
        "absolute": _zip({"/etc/evil": b"x", "manifest.json": _manifest()}),
        "backslash": _zip({"a\\..\\b": b"x", "manifest.json": _manifest()}),
        "no manifest": _zip({"adapters/a1/metadata.json": meta}),
        "bad manifest": _zip({"manifest.json": b"[1,2]"}),
        "manifest json": _zip({"manifest.json": b"{not json"}),
        "bad id": _zip(
            {"manifest.json": _manifest("../x", "adapters/../x/metadata.json"), "adapters/a1/metadata.json": meta}
        ),
        "outside path": _zip(
            {"manifest.json": _manifest(archive_path="adapters/a1/metadata.json"), "adapters/a1/metadata.json": meta}
        ),
        "not safetensors": _zip(
            {
                "manifest.json": _manifest(),
                "adapters/a1/metadata.json": meta,
                "adapters/a1/files/0_x.safetensors": b"garbage bytes here",
            }
        ),
        "too many": _zip({f"f{i}": b"" for i in range(60)}),
    }
    for name, data in cases.items():
        res = (await client.post("/v1/import", **_upload(data, f"{name}.zip"))).json()
        assert res["success"] is False and res["results"][0]["status"] == "error", name
    plain = (await client.post("/v1/import", **_upload(b"this is not a zip", "notes.txt"))).json()
    assert plain["results"][0] == {"file": "notes.txt", "status": "error", "detail": "not a ZIP archive"}
    assert (await client.get("/v1/adapters")).json()["total"] == 0
    assert not (lora_dir / "imports").exists() or not any((lora_dir / "imports").rglob("*.safetensors"))
    assert not (tmp_path / "evil.txt").exists()
    bad = await client.post("/v1/import", **_upload(b"x", config={"conflict_resolution": "explode"}))
    assert bad.status_code == 400 and set(bad.json()) == {"type", "title", "status"}
    bad_config = await client.post("/v1/import", files=[("files", ("a.zip", b"x"))], data={"config": "{"})
    assert bad_config.status_code == 400 and bad_config.json()["title"].startswith("Invalid config")
    assert (await client.post("/v1/import", data={"config": "{}"})).status_code == 400
    ok = _zip(
        {
            "manifest.json": _manifest(),
            "adapters/a1/metadata.json": meta,
            "adapters/a1/files/0_x.safetensors": good_file,
        }
    )
    assert (await client.post("/v1/import", **_upload(ok))).json()["success"] is True


async def test_backups(client, app, lora_dir: Path) -> None:
    configure(app, lora_dir)
    adapter = await create(client, write_lora(lora_dir / "b.safetensors"), "B")
    created = (await client.post("/v1/backup/create", json={"backup_type": "full"})).json()
    assert created["success"] and created["type"] == "Full"
    backup_id = created["backup_id"]
    for _ in range(200):
        history = (await client.get("/api/v1/backups/history")).json()
        if history and history[0]["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert history[0]["id"] == backup_id and history[0]["status"] == "completed" and history[0]["size"] > 0
    await client.delete(f"/v1/adapters/{adapter['id']}")
    restored = (await client.post(f"/v1/backups/{backup_id}/restore")).json()
    assert restored["status"] == "imported" and restored["created"] == 1
    assert (await client.get("/v1/adapters")).json()["items"][0]["name"] == "B"
    assert (await client.delete(f"/v1/backups/{backup_id}")).status_code == 204
    assert (await client.get("/v1/backups/history")).json() == []
    missing = await client.delete(f"/v1/backups/{backup_id}")
    assert missing.status_code == 404 and missing.json()["title"] == "Backup not found"
    assert not await app.state.kernel.blobs.exists(f"lora/backups/{backup_id}.zip")


async def test_export_stream_bounded_and_stops_with_its_reader(tmp_path: Path) -> None:
    import threading
    import zlib

    from kiln.apps.lora.archive import export

    data = bytes(range(256)) * (12 * 4096)  # 12 MiB: more than the chunks allowed in flight
    (tmp_path / "big.safetensors").write_bytes(data)
    views = [{"id": "a1", "name": "big", "file_path": str(tmp_path / "big.safetensors")}]
    whole = b"".join([chunk async for chunk in export.stream_archive(views)])
    with zipfile.ZipFile(io.BytesIO(whole)) as archive:
        member = "adapters/a1/files/0_big.safetensors"
        assert archive.read(member) == data
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["adapters"][0]["files"][0]["crc32"] == f"{zlib.crc32(data):08x}"
    # A reader that goes away (client disconnect) stops the writer thread, which was blocked for room.
    stream = export.stream_archive(views)
    assert len(await stream.__anext__()) <= export.CHUNK + 4096
    await asyncio.sleep(0.05)
    await stream.aclose()
    assert not [t for t in threading.enumerate() if t.name == "lora-export"]
