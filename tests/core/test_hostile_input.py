"""The six root causes of 500s a fuzzing run found, each answered with a 4xx by the engine
(on both databases, through the surfaces mounted today)."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.exceptions import RequestValidationError

from kiln.core.errors import _validation, encodable
from kiln.core.inputs import loads_strict
from tests.apps.media.mediakit import register

BIG = str(2**63)


def _raw(text: str) -> dict:
    """A JSON body sent byte for byte (httpx's `json=` cannot send a lone surrogate)."""
    return {"content": text.encode("utf-8"), "headers": {"content-type": "application/json"}}


def _is_validation_list(response) -> bool:
    detail = response.json()["detail"]
    return isinstance(detail, list) and all({"loc", "msg", "type"} <= set(item) for item in detail)


@pytest.mark.parametrize(
    "url", [f"/jobs?offset={BIG}", f"/assets?offset={BIG}", f"/assets?max_size={BIG}", "/assets?min_duration=1e400"]
)
async def test_huge_integers_in_robotics_queries(client, url):
    response = await client.get(url)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("url", ["/api/vault?page=4611686018427387904", f"/api/map?offset={BIG}"])
async def test_huge_integers_in_media_queries(client, url):
    await register(client, "big@example.com")
    response = await client.get(url)
    assert response.status_code == 422 and _is_validation_list(response), response.text


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"name": "\\ud800"}', "unpaired surrogate"),
        ('{"name": "a\\udc00b"}', "unpaired surrogate"),
        ('{"name": "a\\u0000b"}', "NUL"),
        ('{"name": "x", "\\ud83d": 1}', "unpaired surrogate"),
        ('{"name": 1e400}', "out of range"),
        ('{"name": NaN}', "not a JSON number"),
        (f'{{"name": {BIG}}}', "out of range"),
    ],
)
async def test_unstorable_text_and_numbers_in_bodies_are_refused(client, text, reason):
    response = await client.post("/tags", **_raw(text))
    assert response.status_code == 422, response.text
    assert _is_validation_list(response)
    assert reason in json.dumps(response.json())
    assert (await client.get("/tags")).json() == []


async def test_surrogates_and_nul_in_the_profile(client):
    await register(client, "me@example.com")
    for text in ('{"full_name": "\\ud800"}', '{"full_name": "a\\u0000"}', '{"language": "\\udfff"}'):
        response = await client.put("/api/auth/me", **_raw(text))
        assert response.status_code == 422, response.text
    ok = await client.put("/api/auth/me", **_raw('{"full_name": "Emoji \\ud83d\\ude00 \\\\u0000 ok"}'))
    assert ok.status_code == 200 and ok.json()["full_name"] == "Emoji \U0001f600 \\u0000 ok"


async def test_nul_in_urls_reaches_no_name(client):
    await register(client, "nul@example.com")
    assert (await client.get("/assets/a%00b")).status_code == 404
    assert (await client.get("/tags?x=%00")).status_code == 200
    vault = await client.get("/api/vault?search=a%00b")
    assert vault.status_code == 200 and vault.json()["total"] == 0
    assert (await client.get("/api/media/a%00b/image")).status_code in (404, 422)


async def test_long_and_nul_paths_are_refused(client):
    for path in ["a" * 300, "/tmp/" + "b" * 256 + "/c.bag", "/tmp/x" + "é" * 130 + ".bag"]:
        response = await client.post("/assets/register", json={"file_path": path})
        assert 400 <= response.status_code < 500, (path[:20], response.text)
        response = await client.post("/assets/scan-directory", json={"directory_path": path})
        assert 400 <= response.status_code < 500, (path[:20], response.text)
    response = await client.post("/assets/upload", content=b"x", headers={"x-file-name": "r" * 300 + ".bag"})
    assert response.status_code == 400, response.text


async def test_wrong_types_in_nested_bodies(client):
    bodies = [
        {"asset_ids": ["x"], "spec": {"output": {"format": 5, "shards": "many"}}},
        {"asset_ids": ["x"], "spec": [1, 2]},
        {"asset_ids": [{"a": 1}], "spec": {}},
        {"asset_ids": ["x"], "spec": {"row_strategy": {"kind": {"nested": []}}, "output": None}},
    ]
    for body in bodies:
        response = await client.post("/conversions", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
    for body in [{"topic_type_hints": {"a": 5}}, {"topic_type_hints": [1]}, {"max_messages": {"x": 1}}]:
        response = await client.post("/conversions/draft", json={"asset_ids": ["x"], **body})
        assert 400 <= response.status_code < 500, (body, response.text)


async def test_the_422_encoder_never_fails():
    errors = [
        {
            "type": "x",
            "loc": ("body", "a"),
            "msg": "bad",
            "input": float("inf"),
            "ctx": {"limit": float("nan"), "text": "\ud800", "raw": b"\xff", "obj": object()},
        }
    ]
    response = await _validation(None, RequestValidationError(errors))  # type: ignore[arg-type]
    body = json.loads(response.body)
    item = body["detail"][0]
    assert item["input"] == "inf" and item["ctx"]["limit"] == "nan" and item["ctx"]["text"] == "\ufffd"
    assert encodable({"a": [(-math.inf, "\ud83d\ude00")]}) == {"a": [["-inf", "\U0001f600"]]}


def test_strict_loads_keeps_what_is_valid():
    assert loads_strict(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800", "c": 1.5e300, "d": -9223372036854775808}') == {
        "a": "\U0001f600",
        "b": "\\ud800",
        "c": 1.5e300,
        "d": -(2**63),
    }
    for bad in [b'"\\ud800\\ud800"', b'"\\udc00\\ud800"', b'"\\\\\\u0000"', b"1e309", b"-Infinity"]:
        with pytest.raises(json.JSONDecodeError):
            loads_strict(bad)


async def test_openapi_describes_text_422s(client):
    """Robotics refusals and some media ones answer `{"detail": "text"}` with 422: documented so."""
    doc = (await client.get("/openapi.json")).json()
    for path, method in [
        ("/conversions", "post"),
        ("/jobs", "get"),
        ("/conversion-configs/{config_id}", "patch"),
        ("/api/auth/signup", "post"),
        ("/api/map", "get"),
        ("/api/dashboard/ai-workers/dispatch", "post"),
    ]:
        schema = doc["paths"][path][method]["responses"]["422"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/MessageOrValidationError"}, (path, schema)
    detail = doc["components"]["schemas"]["MessageOrValidationError"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]
    response = await client.get("/jobs?type=nope")
    assert response.status_code == 422 and isinstance(response.json()["detail"], str)


async def test_nul_in_a_multipart_file_name(client):
    from tests.apps.media.mediakit import photo

    await register(client, "form@example.com")
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a\x00b.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = await client.post(
        "/api/upload/files", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code < 500, response.text


def test_storable():
    from kiln.core.inputs import storable

    assert storable("a\x00b\ud800c\U0001f600") == "a\ufffdb\ufffdc\U0001f600"
