"""Security of the robotics surface: output names, allowed roots, bag folders, scan bounds, shards."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiln.apps.robotics.config import RoboticsSettings, set_robotics_settings
from kiln.apps.robotics.conversion.job import dataset_path
from kiln.apps.robotics.spec.models import OutputSpec
from tests.apps.robotics import bagfactory as bf
from tests.apps.robotics.api_helpers import SMALL, convert, recording, register, trigger_spec, wait_job

OUTSIDE = {"detail": "asset path is not inside a folder recordings may be registered from (KILN_ROBOTICS_ROOTS)"}


def _roots(app, *roots: Path, **extra) -> None:
    set_robotics_settings(
        app.state.kernel, RoboticsSettings(_env_file=None, roots=",".join(str(r) for r in roots), **extra)
    )


# ------------------------------------------------------------------------------ filename_template
@pytest.mark.parametrize(
    "template",
    [
        "/tmp/victim.txt",
        "../../../../trav_{episode_id}",
        "sub/{episode_id}",
        "a\\b",
        "x\x00y",
        "..{episode_id}",
        "{episode_id}" + "x" * 250,
        "{nope}",
        "{episode_id",
        "   ",
    ],
)
async def test_filename_template_must_be_a_file_name(client, tmp_path, template):
    asset = await register(client, recording(tmp_path))
    body = {"asset_ids": [asset["id"]], "spec": trigger_spec("parquet", filename_template=template)}
    r = await client.post("/conversions", json=body)
    assert r.status_code == 422, r.text
    # A NUL never reaches the spec: the engine refuses it in any JSON body (kiln.core.inputs).
    assert "filename_template" in r.text or ("\x00" in template and "NUL" in r.text)


async def test_filename_template_names_stay_in_the_run_folder(client, tmp_path):
    asset = await register(client, recording(tmp_path))
    body = {
        "asset_ids": [asset["id"]],
        "spec": trigger_spec("parquet", filename_template="cam-{episode_id}-{shard}.{extension}"),
    }
    run = await convert(client, body)
    folder = Path(run["output_path"])
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["cam-episode_0001-0.manifest.json", "cam-episode_0001-0.parquet", "cam-episode_0001-0.report.md"]


def test_dataset_path_refuses_escapes_even_past_validation(tmp_path):
    for bad in ("../x", "/etc/x", "a/b"):
        out = OutputSpec.model_construct(format="parquet", filename_template=bad)
        with pytest.raises(ValueError, match="leaves the run folder"):
            dataset_path(tmp_path, out, "episode_0001", None, 0, 1)
    ok = OutputSpec(format="parquet", filename_template="{episode_id}")
    assert dataset_path(tmp_path, ok, "episode_0001", None, 0, 1) == tmp_path.resolve() / "episode_0001.parquet"


async def test_shards_have_an_upper_bound(client, tmp_path):
    asset = await register(client, recording(tmp_path))
    r = await client.post(
        "/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec("tfrecord", shards=257)}
    )
    assert r.status_code == 422 and "shards" in r.text
    r = await client.post(
        "/conversions", json={"asset_ids": [asset["id"]], "spec": trigger_spec("tfrecord", shards=256)}
    )
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------------------ roots
def test_default_roots_depend_on_where_kiln_listens(tmp_path):
    cfg = RoboticsSettings(_env_file=None)
    assert cfg.allowed_roots(tmp_path, loopback=True) == [Path("/")]
    assert cfg.allowed_roots(tmp_path, loopback=False) == [(tmp_path / "robotics").resolve()]
    cfg = RoboticsSettings(_env_file=None, roots=f"{tmp_path}/a,{tmp_path}/b")
    assert cfg.allowed_roots(tmp_path, loopback=True) == [tmp_path / "a", tmp_path / "b"]


def test_roots_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_ROBOTICS_ROOTS", f"{tmp_path}/x")
    monkeypatch.setenv("KILN_ROBOTICS_MAX_CHUNK_MB", "8")
    monkeypatch.setenv("KILN_ROBOTICS_APP_NAME", "My Sidecar")
    cfg = RoboticsSettings(_env_file=None)
    assert cfg.allowed_roots(tmp_path, loopback=True) == [tmp_path / "x"]
    assert cfg.max_chunk_bytes == 8 * 1024 * 1024 and cfg.app_name == "My Sidecar"


async def test_outside_the_roots_one_answer_whether_it_exists_or_not(client, app, tmp_path):
    allowed = tmp_path / "allowed"
    inside = recording(allowed)
    outside = recording(tmp_path / "elsewhere")
    _roots(app, allowed)
    for path in (outside, tmp_path / "elsewhere" / "missing.bag", Path("/etc/shadow"), allowed / ".." / "x.bag"):
        r = await client.post("/assets/register", json={"file_path": str(path)})
        assert (r.status_code, r.json()) == (400, OUTSIDE), path
    for directory in (tmp_path / "elsewhere", tmp_path / "nowhere", Path("/")):
        r = await client.post("/assets/scan-directory", json={"directory_path": str(directory)})
        assert (r.status_code, r.json()) == (400, OUTSIDE), directory
    link = allowed / "link.bag"
    link.symlink_to(outside)  # a link inside the roots to a file outside is outside
    r = await client.post("/assets/register", json={"file_path": str(link)})
    assert (r.status_code, r.json()) == (400, OUTSIDE)
    assert (await client.post("/assets/register", json={"file_path": str(inside)})).status_code == 201
    r = await client.post("/assets/scan-directory", json={"directory_path": str(allowed)})
    assert r.status_code == 200
    assert [s["detail"] for s in r.json()["skipped"]] == [OUTSIDE["detail"], f"asset already registered: {inside}"]


async def test_uploads_are_always_allowed(client, app, tmp_path):
    _roots(app, tmp_path / "allowed")
    data = recording(tmp_path / "src").read_bytes()
    r = await client.post("/assets/upload", content=data, headers={"X-File-Name": "up.bag"})
    assert r.status_code == 201, r.text


async def test_bag_folder_storage_files_stay_inside_the_folder(client, tmp_path):
    folder = bf.write_recording(tmp_path / "bag2", "dir-mcap", SMALL)
    meta = folder / "metadata.yaml"
    secret = tmp_path / "secret.mcap"
    secret.write_bytes(b"x" * 1234)
    text = meta.read_text()
    inner = next(folder.glob("*.mcap")).name
    meta.write_text(text.replace(inner, "../secret.mcap"))
    r = await client.post("/assets/register", json={"file_path": str(folder)})
    assert r.status_code == 400
    assert r.json()["detail"].endswith("a storage file of bag2 lies outside its folder: secret.mcap")
    meta.write_text(text.replace(inner, "/etc/passwd"))
    r = await client.post("/assets/register", json={"file_path": str(folder)})
    assert r.status_code == 400 and "lies outside its folder" in r.json()["detail"]


async def test_scan_stops_at_a_bounded_number_of_entries(client, app, tmp_path):
    for i in range(6):
        recording(tmp_path / "many", f"r{i}.bag")
    _roots(app, tmp_path, scan_max_entries=3)
    r = await client.post("/assets/scan-directory", json={"directory_path": str(tmp_path / "many")})
    assert r.status_code == 200 and r.json()["truncated"] is True and r.json()["registered_assets"] == []
    _roots(app, tmp_path, scan_max_entries=100)
    r = await client.post("/assets/scan-directory", json={"directory_path": str(tmp_path / "many")})
    assert r.json()["truncated"] is False and len(r.json()["registered_assets"]) == 6


async def test_bad_path_strings_answer_4xx(client):
    # A NUL is refused by the engine in any JSON body (422); an over-long name by the path check (400).
    r = await client.post("/assets/register", json={"file_path": "/tmp/a\u0000b.bag"})
    assert r.status_code == 422 and "NUL" in r.text
    r = await client.post("/assets/register", json={"file_path": "/tmp/" + "a" * 300 + ".bag"})
    assert r.status_code == 400 and r.json()["detail"] == "asset path is not a valid path"


async def _reads_are_refused(client, asset_id: str) -> None:
    """Every way of reading a registered recording answers the registration refusal."""
    r = await client.post(f"/assets/{asset_id}/index")
    assert (r.status_code, r.json()) == (422, OUTSIDE)
    detail = (await client.get(f"/assets/{asset_id}")).json()
    assert detail["asset"]["indexing_status"] == "failed" and detail["metadata"]["indexing_error"] == OUTSIDE["detail"]
    for route, body in (("inspect", {}), ("draft", {}), ("preview", {"spec": trigger_spec("parquet")})):
        r = await client.post(f"/conversions/{route}", json={"asset_id": asset_id, **body})
        assert (r.status_code, r.json()) == (400, OUTSIDE), route
    r = await client.post("/conversions", json={"asset_ids": [asset_id], "spec": trigger_spec("parquet")})
    assert r.status_code == 201, r.text
    job = await wait_job(client, r.json()["job_id"])
    assert (job["status"], job["error_message"]) == ("failed", OUTSIDE["detail"])


async def test_roots_are_checked_again_when_a_recording_is_read(client, app, tmp_path):
    # a root removed from KILN_ROBOTICS_ROOTS after registration
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    _roots(app, kept, dropped)
    asset = await register(client, recording(dropped))
    _roots(app, kept)
    await _reads_are_refused(client, asset["id"])
    _roots(app, kept, dropped)
    assert (await client.post(f"/assets/{asset['id']}/index")).status_code == 200  # readable again

    # a folder swapped for a symlink leading outside the roots after registration
    sub = kept / "sub"
    swapped = await register(client, recording(sub))
    _roots(app, kept)
    elsewhere = recording(tmp_path / "elsewhere").parent
    sub.rename(tmp_path / "moved")
    sub.symlink_to(elsewhere, target_is_directory=True)
    await _reads_are_refused(client, swapped["id"])
