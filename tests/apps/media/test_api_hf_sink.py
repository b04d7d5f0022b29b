"""The optional Hugging Face sink: READY media are published; deleting them removes the copies."""

from __future__ import annotations

import asyncio

from kiln.apps.media.config import MediaSettings, set_media_settings
from tests.apps.media.mediakit import photo, register, settings, upload, wait_status  # noqa: F401  (fixture)
from tests.fakes.hf_hub import TOKEN, fake_hub  # noqa: F401  (fixture)


async def _wait_files(hub, repo: str, count: int) -> dict[str, bytes]:
    for _ in range(400):
        files = hub.files(repo)
        if len(files) == count:
            return files
        await asyncio.sleep(0.05)
    raise AssertionError(f"hub has {sorted(hub.files(repo))}, wanted {count} files")


async def _last_log(client, media_id: str, action: str) -> dict:
    for _ in range(200):  # the repo path is recorded just after the commit lands
        history = (await client.get(f"/api/map/{media_id}/logs")).json()["history"]
        if history[-1]["action"] == action:
            return history[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {action} log for {media_id}: {history}")


async def test_ready_media_are_published_and_deleted_from_the_sink(app, client, fake_hub):  # noqa: F811
    repo = fake_hub.create_repo("ann/media")
    set_media_settings(app.state.kernel, MediaSettings(_env_file=None, hf_repo_id=repo, hf_token=TOKEN,
                                                       hf_endpoint=fake_hub.endpoint))
    user = await register(client, "ann@example.com")
    data = photo()
    first, second = (await upload(client, ("a b.jpg", data, "image/jpeg"),
                                  ("c.png", photo(fmt="PNG", color=(1, 1, 1)), "image/png"))).json()["media_ids"]
    await wait_status(client, first, {"READY"})
    await wait_status(client, second, {"READY"})
    files = await _wait_files(fake_hub, repo, 4)
    original = next(p for p in files if p.endswith(f"{first}_a b.jpg"))
    assert original.startswith(f"media/{user['id']}/") and files[original] == data
    assert any(p.endswith(f"{second}_thumbnail_c.jpg") for p in files)  # thumbnails are JPEG, so named
    for media_id in (first, second):
        last = await _last_log(client, media_id, "PUBLISH")
        assert last["message"] == f"Published to Hugging Face dataset {repo}"

    commits_before = len(fake_hub.commits)
    assert (await client.delete(f"/api/vault/{first}")).status_code == 200
    assert not any(first in p for p in fake_hub.files(repo))
    assert (await client.delete("/api/vault/all")).json()["deleted_count"] == 1
    assert fake_hub.files(repo) == {}
    assert len(fake_hub.commits) == commits_before + 2  # one deletion commit per request, not per file
