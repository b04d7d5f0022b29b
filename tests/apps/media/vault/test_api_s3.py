"""With S3 storage (moto's server on loopback) the pipeline runs and image URLs are presigned."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from kiln.settings import Settings
from tests.apps.media.mediakit import photo, register, upload, wait_status
from tests.conftest import make_settings
from tests.fakes.s3 import ACCESS_KEY, SECRET_KEY, fake_s3_server  # noqa: F401  (fixture)


@pytest.fixture
def settings(tmp_path, db_url: str, fake_s3_server) -> Settings:  # noqa: F811
    bucket = fake_s3_server.create_bucket()
    return make_settings(
        tmp_path / "home",
        db_url,
        apps=["media"],
        blob_url=f"s3://{bucket}/kiln",
        s3_endpoint_url=fake_s3_server.endpoint_url,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
    )


def _assert_presigned(url: str, endpoint: str) -> None:
    assert url.startswith(endpoint + "/"), url
    assert "X-Amz-Signature" in parse_qs(urlparse(url).query)


async def test_s3_storage_serves_presigned_urls_end_to_end(app, client, settings, fake_s3_server):  # noqa: F811
    user = await register(client, "ann@example.com")
    data = photo(gps=(47.4979, 19.0402, 120.0))
    response = await upload(client, ("street.jpg", data, "image/jpeg"))
    assert response.status_code == 201, response.text
    (media_id,) = response.json()["media_ids"]
    item = await wait_status(client, media_id, {"READY", "FAILED"})
    assert item["status"] == "READY", item
    assert "Budapest" in item["address"]

    endpoint = fake_s3_server.endpoint_url
    _assert_presigned(item["image_url"], endpoint)
    _assert_presigned(item["thumbnail_url"], endpoint)
    recents = (await client.get("/api/upload/recents")).json()["items"]
    _assert_presigned(recents[0]["image_url"], endpoint)
    async with httpx.AsyncClient() as outside:  # a browser fetching the URL straight from S3
        image = await outside.get(item["image_url"])
        thumb = await outside.get(item["thumbnail_url"])
    assert image.status_code == 200 and image.content == data
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"  # a JPEG thumbnail

    # Kiln's own route redirects to a fresh presigned URL rather than proxying the bytes.
    redirect = await client.get(f"/api/media/{media_id}/image")
    assert redirect.status_code == 307
    _assert_presigned(redirect.headers["location"], endpoint)

    bucket = urlparse(settings.blob_url).netloc
    keys = fake_s3_server.keys(bucket)
    assert f"kiln/media/{user['id']}/{media_id}/original" in keys and len(keys) >= 2
    assert (await client.delete(f"/api/vault/{media_id}")).status_code == 200
    assert fake_s3_server.keys(bucket) == []
