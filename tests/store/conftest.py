"""Real object storage servers for the store tests, on free ports of 127.0.0.1, started
once per session: moto's S3 server, and Azurite (Azure Blob Storage). ``s3`` gives each
test its own bucket, AWS variables that point at the server, and a signing key (user
``alice``); ``azure`` the same with a container and a connection string."""

from __future__ import annotations

import itertools
import logging
import os
import pathlib
import socket
import subprocess
import time
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


# -- Azurite: Azure Blob Storage on 127.0.0.1, for az:// stores ---------------------------

# Azurite's well-known development account (public, the same in every copy).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE = pathlib.Path(__file__).parents[1] / "servers" / "node_modules" / ".bin" / "azurite-blob"


@dataclass
class Azure:
    connection: str
    container: str

    @property
    def url(self) -> str:
        return f"az://{self.container}/results"

    def client(self):  # azure-storage-blob, to look at the container as another tool would
        from azure.storage.blob import BlobServiceClient

        # Azurite answers the API versions it knows; the client's newest may be later.
        service = BlobServiceClient.from_connection_string(
            self.connection, api_version="2021-08-06"
        )
        return service.get_container_client(self.container)


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[str]:
    pytest.importorskip("obstore")
    pytest.importorskip("azure.storage.blob")
    if not AZURITE.exists():
        pytest.fail(f"Azurite is not installed: run 'make test' (npm ci in {AZURITE.parents[2]}).")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            str(AZURITE),
            *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *("--inMemoryPersistence", "--skipApiVersionCheck", "--silent"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Azurite did not start") from None
                time.sleep(0.1)
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
        )
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def azure(azurite_server: str, monkeypatch: pytest.MonkeyPatch) -> Azure:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite_server)
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", ALICE)
    found = Azure(azurite_server, f"nbflow-test-{next(_buckets)}")
    found.client().create_container()
    return found
