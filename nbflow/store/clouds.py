"""Where a remote store's bucket is and how its client is configured: S3, GCS, Azure.

Each cloud is configured the way its own tools are, through obstore, which reads the
standard variables itself:

- ``s3://bucket/prefix``: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or
  ``AWS_PROFILE`` and the ``~/.aws`` files, read with boto3), ``AWS_REGION``, and
  ``AWS_ENDPOINT_URL`` for an S3-compatible server (MinIO, Ceph, R2, moto).
- ``gs://bucket/prefix``: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service account or
  ``gcloud auth application-default login``'s file), ``GOOGLE_SERVICE_ACCOUNT_KEY``,
  or a Google Cloud machine's own identity.
- ``az://container/prefix``: ``AZURE_STORAGE_CONNECTION_STRING``, or
  ``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_ACCOUNT_KEY``, a SAS token, a
  service principal (``AZURE_CLIENT_ID``...), or an Azure machine's own identity.

A ``Cloud`` knows nothing of entries or signing (``remote.py``): it parses the URL,
says whether credentials are configured, opens the client and words its errors.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from nbflow.errors import NbflowError

__all__ = ["AZURE", "CLOUDS", "GCS", "S3", "Cloud", "cloud_of"]

# Retries of one request: a throttled or failing request is tried again briefly, then
# fails the way a run can handle (the remote tier is turned off, the run goes on).
RETRY: Any = {
    "max_retries": 2,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2,
    },
}


def _on_machine_of(*vendors: str) -> bool:
    """Whether this machine is a virtual machine of one of ``vendors`` (its own identity
    then gives credentials), as the clouds' own SDKs tell, from the firmware tables."""
    for name in ("sys_vendor", "product_name", "board_vendor"):
        try:
            text = pathlib.Path(f"/sys/class/dmi/id/{name}").read_text()
        except OSError:
            continue
        if any(vendor in text for vendor in vendors):
            return True
    return False


class Cloud:
    """One kind of object storage: its URL, credentials, client and error messages."""

    scheme = ""
    product = ""
    bucket_word = "bucket"
    # Valid bucket (container) names, and how to say so.
    bucket_name = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    bucket_rule = "3-63 lowercase letters, digits, '.' or '-'"
    # The variables that configure a client: a client is shared by the stores of a
    # process while they are the same.
    variables: tuple[str, ...] = ()
    # Variables any one of which gives credentials.
    credential_variables: tuple[str, ...] = ()
    # Whether a listing can start after a given name on the server (S3's start-after,
    # GCS's startOffset; Azure lists from the start and filters).
    lists_from_offset = True
    # Words in a failed request's message that say the bucket is not there.
    missing_words: tuple[str, ...] = ("does not exist",)

    def parse(self, url: str) -> tuple[str, str]:
        """The bucket and prefix (no trailing slash) of ``scheme://bucket/prefix``."""
        match = re.match(rf"^{self.scheme}://([^/?#]+)/?([^?#]*)$", url.strip(), re.IGNORECASE)
        if match is None or not self.bucket_name.match(match.group(1)):
            raise NbflowError(
                f"Cannot open the result store '{url}': expected {self.scheme}://"
                f"{self.bucket_word.upper()}/PREFIX, with a {self.bucket_word} name of "
                f"{self.bucket_rule} (e.g. {self.scheme}://team-results/churn)."
            )
        return match.group(1), match.group(2).strip("/")

    def config(self) -> tuple[str | None, ...]:
        return tuple(os.environ.get(name) for name in self.variables)

    def named_credentials(self) -> bool:
        """Whether a variable that gives credentials is set."""
        return any(os.environ.get(name) for name in self.credential_variables)

    def missing_credentials(self, url: str) -> str | None:
        """What to set, when no credentials are configured; None when some are (no
        request is made)."""
        raise NotImplementedError

    def server(self) -> str:
        """Where requests go, for messages."""
        return self.product

    def connect(self, bucket: str, prefix: str, url: str) -> Any:
        """A new obstore client of the bucket under ``prefix``."""
        raise NotImplementedError

    def make_bucket(self, bucket: str) -> str:
        """The command that creates ``bucket``."""
        raise NotImplementedError

    def credentials_fix(self) -> str:
        """Which credentials to check when they are refused."""
        raise NotImplementedError

    def server_fix(self) -> str:
        """Which settings to check when the server cannot be reached."""
        raise NotImplementedError

    @staticmethod
    def options(endpoint: str | None) -> Any:
        found: dict[str, Any] = {"connect_timeout": "5s", "timeout": "600s"}
        if endpoint and endpoint.lower().startswith("http://"):
            found["allow_http"] = True  # a server on this machine or the local network
        return found


class _S3(Cloud):
    scheme = "s3"
    product = "AWS S3"
    variables = (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )
    credential_variables = (
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    )
    missing_words = ("NoSuchBucket",)

    @staticmethod
    def endpoint() -> str | None:
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    def server(self) -> str:
        where = self.endpoint()
        return f"the endpoint {where}" if where else self.product

    def missing_credentials(self, url: str) -> str | None:
        if self.named_credentials() or profile_file() is not None:
            return None
        if not self.endpoint() and _on_machine_of("Amazon EC2"):
            return None  # the instance's own role
        return (
            f"The result store '{url}' has no credentials: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials), and "
            "AWS_ENDPOINT_URL for a server other than AWS."
        )

    def connect(self, bucket: str, prefix: str, url: str) -> Any:
        from obstore.store import S3Store

        endpoint = self.endpoint()
        kwargs: dict[str, Any] = {}
        if endpoint:
            kwargs["endpoint"] = endpoint
        if not os.environ.get("AWS_ACCESS_KEY_ID") and profile_file() is not None:
            kwargs.update(_profile_credentials(url))
        return S3Store(
            bucket,
            prefix=prefix or None,
            client_options=self.options(endpoint),
            retry_config=RETRY,
            **kwargs,
        )

    def make_bucket(self, bucket: str) -> str:
        return f"aws s3 mb s3://{bucket}"

    def credentials_fix(self) -> str:
        return "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"

    def server_fix(self) -> str:
        return "AWS_ENDPOINT_URL and AWS_REGION"


def profile_file() -> pathlib.Path | None:
    """The shared AWS credentials or config file that names this profile's keys, if any."""
    profile = os.environ.get("AWS_PROFILE") or "default"
    named = "default" if profile == "default" else f"profile {profile}"
    for var, default, section in (
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials", profile),
        ("AWS_CONFIG_FILE", "~/.aws/config", named),
    ):
        path = pathlib.Path(os.environ.get(var) or default).expanduser()
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        if parser.has_option(section, "aws_access_key_id") or parser.has_option(
            section, "sso_session"
        ):
            return path
    return None


def _profile_credentials(url: str) -> dict[str, Any]:
    # obstore reads the AWS_* variables itself; the ~/.aws files need boto3.
    from nbflow.store.remote import StoreUnavailableError

    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise StoreUnavailableError(
            f"The result store '{url}' has credentials only in the ~/.aws files, which are "
            "read with boto3. Install it (pip install boto3) or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY."
        ) from None
    session = boto3.Session()
    found: dict[str, Any] = {"credential_provider": Boto3CredentialProvider(session)}
    if session.region_name and not (
        os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    ):
        found["region"] = session.region_name
    return found


class _GCS(Cloud):
    scheme = "gs"
    product = "Google Cloud Storage"
    bucket_name = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
    bucket_rule = "3-63 lowercase letters, digits, '.', '_' or '-'"
    credential_variables = (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_SERVICE_ACCOUNT",
        "GOOGLE_SERVICE_ACCOUNT_PATH",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
        "GOOGLE_BEARER_TOKEN",
    )
    variables = (*credential_variables, "GOOGLE_BASE_URL")

    @staticmethod
    def default_credentials() -> pathlib.Path:
        """Where ``gcloud auth application-default login`` keeps its credentials."""
        folder = os.environ.get("CLOUDSDK_CONFIG") or "~/.config/gcloud"
        return pathlib.Path(folder).expanduser() / "application_default_credentials.json"

    def server(self) -> str:
        where = os.environ.get("GOOGLE_BASE_URL")
        return f"the endpoint {where}" if where else self.product

    def missing_credentials(self, url: str) -> str | None:
        if self.named_credentials():
            return None
        if self.default_credentials().is_file() or _on_machine_of("Google"):
            return None
        return (
            f"The result store '{url}' has no credentials: set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account key file, or run: gcloud auth application-default login."
        )

    def connect(self, bucket: str, prefix: str, url: str) -> Any:
        from obstore.store import GCSStore

        kwargs: dict[str, Any] = {}
        if not self.named_credentials():
            path = self.default_credentials()
            if path.is_file():
                kwargs["application_credentials"] = str(path)
        return GCSStore(
            bucket,
            prefix=prefix or None,
            client_options=self.options(os.environ.get("GOOGLE_BASE_URL")),
            retry_config=RETRY,
            **kwargs,
        )

    def make_bucket(self, bucket: str) -> str:
        return f"gcloud storage buckets create gs://{bucket}"

    def credentials_fix(self) -> str:
        return "GOOGLE_APPLICATION_CREDENTIALS (or gcloud auth application-default login)"

    def server_fix(self) -> str:
        return "GOOGLE_BASE_URL (only for a server other than Google's)"


class _Azure(Cloud):
    scheme = "az"
    product = "Azure Blob Storage"
    bucket_word = "container"
    lists_from_offset = False
    bucket_name = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
    bucket_rule = "3-63 lowercase letters, digits or single '-'"
    credential_variables = (
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_TOKEN",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_USE_AZURE_CLI",
    )
    variables = (
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_ACCOUNT_NAME",
        *credential_variables,
        "AZURE_STORAGE_USE_EMULATOR",
        "AZURE_STORAGE_ENDPOINT",
    )
    missing_words = ("ContainerNotFound", "does not exist")

    @staticmethod
    def connection() -> dict[str, str]:
        """``AZURE_STORAGE_CONNECTION_STRING`` as its parts (``AccountName``...).

        >>> os.environ["AZURE_STORAGE_CONNECTION_STRING"] = "AccountName=a;AccountKey=k=="
        >>> _Azure.connection()
        {'AccountName': 'a', 'AccountKey': 'k=='}
        >>> del os.environ["AZURE_STORAGE_CONNECTION_STRING"]
        """
        text = os.environ.get("AZURE_STORAGE_CONNECTION_STRING") or ""
        parts = (part.partition("=") for part in text.split(";") if part.strip())
        return {name.strip(): value.strip() for name, _, value in parts}

    def settings(self) -> dict[str, Any]:
        """What the connection string gives, as obstore's settings; the other variables
        are read by obstore itself."""
        parts: Mapping[str, str] = self.connection()
        found: dict[str, Any] = {}
        if "AccountName" in parts:
            found["account_name"] = parts["AccountName"]
        if "AccountKey" in parts:
            found["account_key"] = parts["AccountKey"]
        if "SharedAccessSignature" in parts:
            found["sas_key"] = parts["SharedAccessSignature"]
        if "BlobEndpoint" in parts:
            found["endpoint"] = parts["BlobEndpoint"]
        if parts.get("UseDevelopmentStorage", "").lower() == "true":
            found["use_emulator"] = True
        return found

    def endpoint(self) -> str | None:
        found = self.settings().get("endpoint") or os.environ.get("AZURE_STORAGE_ENDPOINT")
        if found is None and self._emulated():
            return "http://127.0.0.1:10000"
        return found

    def _emulated(self) -> bool:
        return bool(self.settings().get("use_emulator")) or os.environ.get(
            "AZURE_STORAGE_USE_EMULATOR", ""
        ).lower() in ("1", "true")

    def server(self) -> str:
        where = self.endpoint()
        return f"the endpoint {where}" if where else self.product

    def missing_credentials(self, url: str) -> str | None:
        given = self.settings()
        env = os.environ
        if self._emulated():
            return None
        if not (given.get("account_name") or env.get("AZURE_STORAGE_ACCOUNT_NAME")):
            return (
                f"The result store '{url}' does not name a storage account: set "
                "AZURE_STORAGE_CONNECTION_STRING (from the account's Access keys page), or "
                "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY."
            )
        if given.get("account_key") or given.get("sas_key"):
            return None
        if self.named_credentials() or _on_machine_of("Microsoft"):
            return None
        return (
            f"The result store '{url}' has no credentials: set AZURE_STORAGE_ACCOUNT_KEY (or "
            "AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING, a service principal's "
            "AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, or AZURE_USE_AZURE_CLI=true "
            "after az login)."
        )

    def connect(self, bucket: str, prefix: str, url: str) -> Any:
        from obstore.store import AzureStore

        kwargs = self.settings()
        return AzureStore(
            bucket,
            prefix=prefix or None,
            client_options=self.options(self.endpoint()),
            retry_config=RETRY,
            **kwargs,
        )

    def make_bucket(self, bucket: str) -> str:
        return f"az storage container create --name {bucket}"

    def credentials_fix(self) -> str:
        return "AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT_NAME and its key)"

    def server_fix(self) -> str:
        return "the account name and AZURE_STORAGE_ENDPOINT (or the connection string)"


S3 = _S3()
GCS = _GCS()
AZURE = _Azure()
CLOUDS: dict[str, Cloud] = {c.scheme: c for c in (S3, GCS, AZURE)}


def cloud_of(url: str) -> Cloud:
    """The cloud of a store URL, by its scheme.

    >>> cloud_of("gs://team-results/churn").product
    'Google Cloud Storage'
    """
    scheme = url.partition("://")[0].lower()
    cloud = CLOUDS.get(scheme)
    if cloud is None:
        raise NbflowError(
            f"Cannot open the result store '{url}': expected a URL starting with "
            f"{', '.join(f'{s}://' for s in CLOUDS)}."
        )
    return cloud
