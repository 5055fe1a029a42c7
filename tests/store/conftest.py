"""A real S3-compatible server for the store tests: moto's, on a free port of 127.0.0.1,
started once per session. ``s3`` gives each test its own bucket, AWS variables that
point at the server, and a signing key (user ``alice``)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

ALICE = "alice:alice-secret-0123456789"
BOB = "bob:bob-secret-abcdefghijklmn"
_buckets = itertools.count()


@dataclass
class S3:
    endpoint: str
    bucket: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/results"

    def client(self):  # boto3, to look at the bucket the way another tool would
        import boto3

        # A fresh session: boto3's default one keeps the variables it first saw.
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    pytest.importorskip("obstore")
    moto_server = pytest.importorskip("moto.server")
    # werkzeug logs every request at INFO; the tests read warnings, not request logs.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3:
    aws_env(monkeypatch, s3_server)
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", ALICE)
    found = S3(s3_server, f"nbflow-test-{next(_buckets)}")
    found.client().create_bucket(Bucket=found.bucket)
    return found
