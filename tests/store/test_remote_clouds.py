"""``az://`` and ``gs://`` stores. Azure Blob Storage against Azurite on 127.0.0.1 (see
conftest): the same store as ``s3://`` with another client configuration. Google Cloud
Storage has no server here: its URLs and missing settings are checked before any
request."""

from __future__ import annotations

import warnings

import pytest

from nbflow import Flow, cache_info, clear_cache, task
from nbflow.errors import NbflowError
from nbflow.store.base import open_store
from nbflow.store.remote import RemoteStore, StoreUnavailableError, UnsignedEntryWarning
from nbflow.store.tiered import TieredStore

BOB = "bob:bob-secret-abcdefghijklmn"


@task
def cube(i):
    return i**3


@task
def add(xs):
    return sum(xs)


def _flow(n: int = 8):
    with Flow("clouds") as flow:
        end = add([cube(i) for i in range(n)])
    return flow, end


def _home(tmp_path, monkeypatch, name):
    home = tmp_path / name
    home.mkdir()
    monkeypatch.setenv("NBFLOW_HOME", str(home))


# -- Azure Blob Storage (Azurite) ----------------------------------------------------------


def test_an_az_url_keeps_results_in_the_container_for_the_next_machine(
    azure, tmp_path, monkeypatch
):
    _home(tmp_path, monkeypatch, "first")
    flow, end = _flow()
    run = flow.run(store=azure.url)
    assert run.ok and run.result(end) == sum(i**3 for i in range(8))
    blobs = sorted(b.name for b in azure.client().list_blobs())
    assert f"results/r/{run[end].key}" in blobs
    assert f"results/t/add/alice/{run[end].key}" in blobs
    _home(tmp_path, monkeypatch, "second")
    store = open_store(azure.url)
    assert isinstance(store, TieredStore) and store.remote.cloud.scheme == "az"
    store.remote.begin_run()
    store.remote.requests.clear()
    again = flow.run(store=store)
    assert again.counts() == {"cached": 9}
    assert store.remote.requests["get"] == 0  # settled from the listings
    assert again.result(end) == run.result(end)
    assert store.remote.requests["get"] == 1


def test_an_az_store_refuses_an_untrusted_writer_and_counts_and_clears_its_entries(
    azure, tmp_path, monkeypatch
):
    _home(tmp_path, monkeypatch, "alice")
    flow, _ = _flow(3)
    assert flow.run(store=azure.url).ok
    info = cache_info(azure.url)
    assert info["path"] == azure.url
    assert info["per_task"] == {"cube": 3, "add": 1}
    _home(tmp_path, monkeypatch, "bob")
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", BOB)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(store=azure.url)
    assert run.ok and not any(r.cached for r in run.task_runs)
    refused = [str(w.message) for w in caught if issubclass(w.category, UnsignedEntryWarning)]
    assert len(refused) == 1 and "signed by key 'alice', which is not trusted" in refused[0]
    # Bob's own results replaced Alice's; clearing the task removes them and their markers.
    assert clear_cache(task="cube", path=azure.url) == 3
    assert cache_info(azure.url)["per_task"] == {"add": 1}
    assert not [b.name for b in azure.client().list_blobs() if "/t/cube/" in b.name]


def test_a_missing_container_stops_the_run_naming_it_and_the_command_that_makes_it(azure):
    flow, _ = _flow(2)
    with pytest.raises(
        StoreUnavailableError,
        match=r"'az://no-such-container/x' cannot be used: the container 'no-such-container' "
        r"does not exist at the endpoint http://127\.0\.0\.1:\d+/devstoreaccount1\. Create it "
        r"\(az storage container create --name no-such-container\)",
    ):
        flow.run(store="az://no-such-container/x")


def test_a_wrong_account_key_is_named_as_refused_credentials(azure, monkeypatch):
    wrong = azure.connection.replace("AccountKey=Eby8", "AccountKey=Abc8")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    with pytest.raises(StoreUnavailableError, match=r"refused the credentials .* Check AZURE_"):
        _flow(2)[0].run(store=azure.url)


def _refused(monkeypatch, unset: tuple[str, ...], url: str, match: str) -> None:
    """A run on ``url`` with the variables ``unset`` stops before it starts."""
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", "alice:alice-secret-0123456789")
    with pytest.raises(StoreUnavailableError, match=match):
        _flow(2)[0].run(store=url)


def test_an_az_store_without_an_account_says_what_to_set(monkeypatch):
    _refused(
        monkeypatch,
        (
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_USE_EMULATOR",
        ),
        "az://team/churn",
        r"'az://team/churn' does not name a storage account: set AZURE_STORAGE_CONNECTION_STRING",
    )


# -- URLs and settings of every cloud ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "product", "bucket", "prefix"),
    [
        ("s3://team-results/churn/", "AWS S3", "team-results", "churn"),
        ("gs://team_results/a/b", "Google Cloud Storage", "team_results", "a/b"),
        ("az://team-results", "Azure Blob Storage", "team-results", ""),
    ],
)
def test_each_scheme_opens_its_cloud_behind_the_local_tier(url, product, bucket, prefix):
    store = open_store(url)
    assert isinstance(store, TieredStore) and isinstance(store.remote, RemoteStore)
    remote = store.remote
    assert (remote.cloud.product, remote.bucket, remote.prefix) == (product, bucket, prefix)
    assert store.url == f"{url.split('://')[0]}://{bucket}/{prefix}".rstrip("/")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("gs://Bad Bucket/x", r"expected gs://BUCKET/PREFIX, with a bucket name of"),
        ("az://a--b/x", r"expected az://CONTAINER/PREFIX, with a container name of 3-63"),
        ("az://team_results/x", r"expected az://CONTAINER/PREFIX"),
    ],
)
def test_a_malformed_cloud_url_says_what_the_url_looks_like(url, expected):
    with pytest.raises(NbflowError, match=expected):
        open_store(url)


def test_a_gs_store_without_credentials_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no login file there
    _refused(
        monkeypatch,
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "GOOGLE_BEARER_TOKEN",
        ),
        "gs://team-results/churn",
        r"'gs://team-results/churn' has no credentials: set "
        r"GOOGLE_APPLICATION_CREDENTIALS .* gcloud auth application-default login",
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Error performing GET http://127.0.0.1:42853/b?list-type=2 in 244.764019ms, "
            "after 2 retries, max_retries: 2 - HTTP error: error sending request",
            "cannot be reached",
        ),
        ("tcp connect error: Connection refused (os error 111), port 14013", "cannot be reached"),
        (
            "Client error with status 403: <Error><Code>Nope</Code></Error>",
            "refused the credentials",
        ),
        ("Received status 401 from the server", "refused the credentials"),
        ("<Code>SignatureDoesNotMatch</Code>", "refused the credentials"),
    ],
)
def test_a_failure_is_told_apart_by_what_the_server_said_not_by_digits_in_it(message, expected):
    remote = open_store("s3://team-results/x").remote
    assert expected in remote._diagnose(RuntimeError(message))
