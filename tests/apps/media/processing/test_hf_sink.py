"""Hugging Face dataset sink against a loopback server speaking the Hub commit API."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone

import pytest

from kiln.apps.media.processing.hf_sink import (
    HfFile,
    HfRateLimited,
    HfSink,
    HfSinkError,
    hf_sink_from_settings,
    media_path,
    safe_filename,
    thumbnail_path,
)
from tests.fakes.hf_hub import TOKEN, FakeHub, fake_hub  # noqa: F401  (fixture)

pytest.importorskip("huggingface_hub")
REPO = "kiln/media"


@pytest.fixture
def sink(fake_hub: FakeHub) -> HfSink:  # noqa: F811
    fake_hub.create_repo(REPO)
    return HfSink(TOKEN, REPO, endpoint=fake_hub.endpoint, max_files_per_commit=3)


def test_paths_follow_the_contract_layout():
    day = date(2024, 5, 1)
    assert media_path("u1", "m1", "IMG_0001.HEIC", day) == "media/u1/2024-05-01/m1_IMG_0001.HEIC"
    assert thumbnail_path("u1", "m1", "IMG_0001.HEIC", day) == "media/u1/2024-05-01/m1_thumbnail_IMG_0001.jpg"
    # The folder is the UTC date: 00:30 in UTC+2 is still the previous day in UTC.
    late = datetime(2024, 5, 2, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert media_path("u1", "m1", "a.jpg", late).startswith("media/u1/2024-05-01/")


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\a b.jpg", "a b.jpg"),
        ("..", "file"),
        ("ph*to?.png", "ph_to_.png"),
    ],
)
def test_client_file_names_cannot_escape_the_folder(raw, safe):
    assert safe_filename(raw) == safe


def test_publish_batches_files_into_few_commits(sink, fake_hub):  # noqa: F811
    day = date(2024, 5, 1)
    files = [HfFile(media_path("u1", f"m{i}", f"p{i}.jpg", day), f"bytes-{i}".encode()) for i in range(7)]
    oids = sink.publish(files, "Upload 7 photos")
    assert len(oids) == 3 == len(fake_hub.commits)  # 3 + 3 + 1
    assert [c.oid for c in fake_hub.commits] == oids
    assert [len(c.added) for c in fake_hub.commits] == [3, 3, 1]
    stored = fake_hub.files(REPO)
    assert stored == {f.path_in_repo: f.data for f in files}
    assert fake_hub.commits[0].summary.startswith("Upload 7 photos (1)")


def test_publish_from_a_local_file(sink, fake_hub, tmp_path):  # noqa: F811
    local = tmp_path / "orig.jpg"
    local.write_bytes(b"\xff\xd8 jpeg bytes")
    sink.publish([HfFile("media/u2/2024-01-01/x_orig.jpg", local)])
    assert fake_hub.files(REPO)["media/u2/2024-01-01/x_orig.jpg"] == b"\xff\xd8 jpeg bytes"


def test_remove_deletes_in_one_commit_and_ignores_missing(sink, fake_hub):  # noqa: F811
    files = [HfFile(f"media/u1/2024-05-01/m{i}_a.jpg", b"x%d" % i) for i in range(3)]
    sink.publish(files)
    before = len(fake_hub.commits)
    oid = sink.remove([files[0].path_in_repo, files[2].path_in_repo, "media/u1/2024-05-01/gone.jpg"])
    assert oid is not None and len(fake_hub.commits) == before + 1
    assert sorted(fake_hub.commits[-1].deleted) == sorted([files[0].path_in_repo, files[2].path_in_repo])
    assert list(fake_hub.files(REPO)) == [files[1].path_in_repo]
    assert sink.remove(["media/u1/2024-05-01/gone.jpg"]) is None  # nothing there: no empty commit
    assert len(fake_hub.commits) == before + 1


def test_rate_limit_becomes_retryable_error(sink, fake_hub):  # noqa: F811
    fake_hub.fail_next(429, {"Retry-After": "42"})
    with pytest.raises(HfRateLimited) as info:
        sink.publish([HfFile("media/a.jpg", b"1")])
    assert info.value.retry_after == 42.0
    assert fake_hub.files(REPO) == {}


def test_other_failures_are_sink_errors(fake_hub):  # noqa: F811
    fake_hub.create_repo(REPO)
    wrong_token = HfSink("hf_wrong", REPO, endpoint=fake_hub.endpoint)
    with pytest.raises(HfSinkError, match="401"):
        wrong_token.publish([HfFile("media/a.jpg", b"1")])
    missing_repo = HfSink(TOKEN, "kiln/absent", endpoint=fake_hub.endpoint)
    with pytest.raises(HfSinkError, match="404"):
        missing_repo.publish([HfFile("media/a.jpg", b"1")])
    fake_hub.fail_next(500)
    with pytest.raises(HfSinkError, match="500"):
        HfSink(TOKEN, REPO, endpoint=fake_hub.endpoint).publish([HfFile("media/b.jpg", b"1")])


def test_url_and_settings(fake_hub):  # noqa: F811
    assert hf_sink_from_settings("t", None) is None
    sink = hf_sink_from_settings("t", "me/photos")
    assert sink is not None
    assert sink.url_for("media/u/2024-01-01/m_a b.jpg") == (
        "https://huggingface.co/datasets/me/photos/resolve/main/media/u/2024-01-01/m_a%20b.jpg"
    )
    with pytest.raises(HfSinkError, match="owner/name"):
        HfSink("t", "no-slash")


def test_missing_package_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(HfSinkError, match="needs huggingface_hub"):
        HfSink("t", "me/photos")
