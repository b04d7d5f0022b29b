"""The optional Hugging Face sink: READY media are published; deleting them removes the copies."""

from __future__ import annotations

import asyncio

import pytest

from kiln.apps.media.config import MediaSettings, set_media_settings
from kiln.apps.media.processing.hf_sink import HfRateLimited, HfSinkError
from kiln.apps.media.processing.publishing import publish_pending
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
    set_media_settings(
        app.state.kernel, MediaSettings(_env_file=None, hf_repo_id=repo, hf_token=TOKEN, hf_endpoint=fake_hub.endpoint)
    )
    user = await register(client, "ann@example.com")
    data = photo()
    first, second = (
        await upload(client, ("a b.jpg", data, "image/jpeg"), ("c.png", photo(fmt="PNG", color=(1, 1, 1)), "image/png"))
    ).json()["media_ids"]
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


async def _ready_items(app, client, count: int) -> list[str]:
    """`count` READY items uploaded while no sink is configured (nothing published yet)."""
    await register(client, "bo@example.com")
    files = [(f"p{i}.jpg", photo(color=(10 * i, 60, 90)), "image/jpeg") for i in range(count)]
    ids = (await upload(client, *files)).json()["media_ids"]
    for media_id in ids:
        await wait_status(client, media_id, {"READY"})
    return ids


def _configure(app, fake_hub, repo: str) -> None:  # noqa: F811
    set_media_settings(
        app.state.kernel, MediaSettings(_env_file=None, hf_repo_id=repo, hf_token=TOKEN, hf_endpoint=fake_hub.endpoint)
    )


async def test_publishing_batches_many_items_into_one_commit(app, client, fake_hub):  # noqa: F811
    ids = await _ready_items(app, client, 3)
    repo = fake_hub.create_repo("bo/media")
    _configure(app, fake_hub, repo)
    assert await publish_pending(app.state.kernel) == 3
    assert len(fake_hub.commits) == 1 and len(fake_hub.commits[0].added) == 6  # 3 originals + 3 thumbnails
    assert {p.split("/")[-1].split("_")[0] for p in fake_hub.files(repo)} == set(ids)
    assert await publish_pending(app.state.kernel) == 0  # recorded: nothing is published twice
    assert len(fake_hub.commits) == 1


async def test_concurrent_publishing_runs_publish_each_item_once(app, client, fake_hub):  # noqa: F811
    ids = await _ready_items(app, client, 3)
    repo = fake_hub.create_repo("bo/media")
    _configure(app, fake_hub, repo)
    counts = await asyncio.gather(*(publish_pending(app.state.kernel) for _ in range(3)))
    assert sorted(counts) == [0, 0, 3] and len(fake_hub.commits) == 1
    for media_id in ids:
        history = (await client.get(f"/api/map/{media_id}/logs")).json()["history"]
        assert [h["action"] for h in history].count("PUBLISH") == 1


async def test_rate_limit_leaves_items_for_the_next_run(app, client, fake_hub):  # noqa: F811
    ids = await _ready_items(app, client, 2)
    repo = fake_hub.create_repo("bo/media")
    _configure(app, fake_hub, repo)
    fake_hub.fail_next(429, {"Retry-After": "7"})
    with pytest.raises(HfRateLimited) as exc:
        await publish_pending(app.state.kernel)
    assert exc.value.retry_after == 7 and fake_hub.files(repo) == {}
    history = (await client.get(f"/api/map/{ids[0]}/logs")).json()["history"]
    assert history[-1]["action"] != "PUBLISH"
    assert await publish_pending(app.state.kernel) == 2 and len(fake_hub.files(repo)) == 4


async def test_failed_publishing_is_logged_and_given_up_after_three_failures(app, client, fake_hub):  # noqa: F811
    (media_id,) = await _ready_items(app, client, 1)
    repo = fake_hub.create_repo("bo/media")
    _configure(app, fake_hub, repo)
    for _attempt in range(3):
        fake_hub.fail_next(500)
        with pytest.raises(HfSinkError):
            await publish_pending(app.state.kernel)
        last = await _last_log(client, media_id, "PUBLISH_FAILED")
        assert last["message"].startswith("Publish to Hugging Face failed: Hugging Face Hub answered 500")
    assert await publish_pending(app.state.kernel) == 0  # left to an operator now
    assert fake_hub.files(repo) == {}
