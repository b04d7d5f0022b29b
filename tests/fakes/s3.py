"""A real S3 HTTP endpoint on loopback (moto's server), for testing S3 adapters.

Usage in a test module:

    from tests.fakes.s3 import FakeS3, fake_s3_server   # fixture: session-scoped FakeS3

    def test_x(fake_s3_server):
        bucket = fake_s3_server.create_bucket()
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class FakeS3:
    endpoint_url: str
    access_key_id: str = ACCESS_KEY
    secret_access_key: str = SECRET_KEY
    region: str = REGION
    _server: object = field(default=None, repr=False)

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def create_bucket(self, name: str | None = None) -> str:
        """A fresh bucket per test keeps tests independent without restarting the server."""
        name = name or f"kiln-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def start_fake_s3() -> FakeS3:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return FakeS3(endpoint_url=f"http://127.0.0.1:{port}", _server=server)


@pytest.fixture(scope="session")
def fake_s3_server() -> Iterator[FakeS3]:
    fake = start_fake_s3()
    try:
        yield fake
    finally:
        fake.stop()
