"""Results on an S3-compatible store (moto's server on 127.0.0.1, see conftest): the
local tier in front of the bucket, signed entries, faults, and cache info/clear.

Two users are two home folders (``NBFLOW_HOME``) with two signing keys."""

from __future__ import annotations

import os
import socket
import warnings

import pytest

from nbflow import Flow, State, cache_info, clear_cache, task
from nbflow.store.base import open_store
from nbflow.store.remote import (
    RemoteStoreWarning,
    StoreUnavailableError,
    UnsignedEntryWarning,
)
from nbflow.store.tiered import TieredStore

ALICE = "alice:alice-secret-0123456789"  # as the s3 fixture sets it
BOB = "bob:bob-secret-abcdefghijklmn"


@task
def numbers(n):
    return list(range(n))


@task
def total(xs):
    return sum(xs)


@task
def label(t):
    return f"total {t}"


def _flow(n: int = 5) -> Flow:
    with Flow("remote") as flow:
        label(total(numbers(n)))
    return flow


def _cached(run) -> dict[str, bool]:
    return {r.name: r.cached for r in run.task_runs}


def _run(flow: Flow, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(**options)
    return run, caught


def _new_home(tmp_path, monkeypatch, name: str):
    home = tmp_path / name
    home.mkdir()
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    return home


def _objects(s3) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])
    return sorted(o["Key"] for o in listed)


# -- item 1: the bucket behind the local tier ------------------------------------------


def test_an_s3_url_opens_the_home_folder_in_front_of_the_bucket(s3):
    store = open_store(s3.url)
    assert isinstance(store, TieredStore)
    assert store.url == s3.url
    assert str(store.path) == str(store.local.path)


def test_a_run_writes_each_result_to_both_tiers(s3):
    run = _flow().run(store=s3.url)
    assert run.ok
    keys = sorted(r.key for r in run.task_runs)
    assert _objects(s3) == sorted(
        [f"results/r/{k}" for k in keys]
        + [f"results/t/{r.name}/alice/{r.key}" for r in run.task_runs]
    )
    local = open_store(s3.url).local
    assert sorted(local.get_many(keys)) == keys


def test_a_second_machine_reads_the_first_ones_results_from_the_bucket(s3, tmp_path, monkeypatch):
    _new_home(tmp_path, monkeypatch, "first")
    assert _flow().run(store=s3.url).ok
    _new_home(tmp_path, monkeypatch, "second")
    run = _flow().run(store=s3.url)
    assert run.result("label") == "total 10"
    assert _cached(run) == {"numbers": True, "total": True, "label": True}


def test_a_remote_hit_is_kept_in_the_local_tier(s3, tmp_path, monkeypatch):
    _new_home(tmp_path, monkeypatch, "first")
    first = _flow().run(store=s3.url)
    _new_home(tmp_path, monkeypatch, "second")
    store = open_store(s3.url)
    key = first["total"].key
    assert store.local.get(key, None) is None
    assert store.get(key) == 10
    assert store.local.get(key) == 10


def test_nbflow_store_names_the_store_of_runs_that_name_none(s3, monkeypatch):
    monkeypatch.setenv("NBFLOW_STORE", s3.url)
    run = _flow(3).run()
    assert run.ok
    assert f"results/r/{run['total'].key}" in _objects(s3)
    assert cache_info()["path"] == s3.url


# -- item 3: signed entries --------------------------------------------------------------


def test_a_reader_trusting_the_writer_key_reads_its_entries(s3, tmp_path, monkeypatch):
    _new_home(tmp_path, monkeypatch, "alice")
    assert _flow().run(store=s3.url).ok
    _new_home(tmp_path, monkeypatch, "bob")
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", BOB)
    monkeypatch.setenv("NBFLOW_TRUSTED_KEYS", ALICE)
    run, caught = _run(_flow(), store=s3.url)
    assert _cached(run) == {"numbers": True, "total": True, "label": True}
    assert not [w for w in caught if issubclass(w.category, UnsignedEntryWarning)]


def test_entries_from_an_untrusted_writer_are_misses_with_one_warning(s3, tmp_path, monkeypatch):
    _new_home(tmp_path, monkeypatch, "alice")
    assert _flow().run(store=s3.url).ok
    _new_home(tmp_path, monkeypatch, "bob")
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", BOB)
    run, caught = _run(_flow(), store=s3.url)
    assert run.ok
    assert _cached(run) == {"numbers": False, "total": False, "label": False}
    messages = [str(w.message) for w in caught if issubclass(w.category, UnsignedEntryWarning)]
    assert len(messages) == 1  # one per writer key and reason, not one per entry
    assert "signed by key 'alice', which is not trusted" in messages[0]
    assert s3.url in messages[0]


def test_a_forged_entry_is_never_unpickled(s3, tmp_path, monkeypatch):
    run = _flow().run(store=s3.url)
    key = run["total"].key
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    from nbflow.store.signing import seal

    # Signed with a key of the same name but another secret: a forgery.
    blob = b"".join(seal(key, [pickle.dumps(Boom())], task="total", signer=("alice", b"x" * 32)))
    s3.client().put_object(Bucket=s3.bucket, Key=f"results/r/{key}", Body=blob)
    s3.client().put_object(Bucket=s3.bucket, Key=f"results/r/{run['label'].key}", Body=b"junk")
    _new_home(tmp_path, monkeypatch, "other")
    with pytest.warns(UnsignedEntryWarning) as caught:
        again = open_store(s3.url).get_many([key, run["label"].key])
    assert again == {}
    assert not marker.exists()
    assert {str(w.message).split(" in the result")[0] for w in caught} == {
        f"nbflow: the signature of entry '{key}' by key 'alice' does not match",
        f"nbflow: entry '{run['label'].key}' is not a signed nbflow entry",
    }


def test_a_run_without_any_key_is_refused_before_it_starts(s3, monkeypatch):
    monkeypatch.delenv("NBFLOW_SIGNING_KEY")
    with pytest.raises(StoreUnavailableError, match=r"'s3://.*/results' needs a signing key"):
        _flow().run(store=s3.url)


def test_a_reader_without_a_signing_key_reads_but_writes_only_locally(s3, tmp_path, monkeypatch):
    _new_home(tmp_path, monkeypatch, "alice")
    _flow(5).run(store=s3.url)
    before = _objects(s3)
    _new_home(tmp_path, monkeypatch, "reader")
    monkeypatch.delenv("NBFLOW_SIGNING_KEY")
    monkeypatch.setenv("NBFLOW_TRUSTED_KEYS", ALICE)
    run = _flow(6).run(store=s3.url)
    assert run.ok
    assert _objects(s3) == before
    again = _flow(6).run(store=s3.url)
    assert _cached(again) == {"numbers": True, "total": True, "label": True}


# -- item 4: bad input and faults ---------------------------------------------------------


@pytest.fixture(scope="module")
def dead_port():
    """A port held bound and never listened on: connecting to it is refused, and no
    other socket (another process's server, an outgoing connection's own end) can take
    it while the tests use it, as one freed at once could be."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_an_unreachable_endpoint_stops_the_run_at_its_start_naming_the_store(
    s3, monkeypatch, dead_port
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead_port}")
    with pytest.raises(
        StoreUnavailableError,
        match=r"The result store 's3://nbflow-test-\d+/results' cannot be reached at the "
        r"endpoint http://127\.0\.0\.1:\d+ .* Check AWS_ENDPOINT_URL",
    ):
        _flow().run(store=s3.url)


def test_missing_credentials_stop_the_run_at_its_start(s3, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(
        StoreUnavailableError, match=r"'s3://.*/results' has no credentials: set AWS_ACCESS_KEY_ID"
    ):
        _flow().run(store=s3.url)


def test_a_missing_bucket_stops_the_run_naming_the_bucket(s3):
    with pytest.raises(
        StoreUnavailableError,
        match=r"'s3://no-such-bucket-here/x' cannot be used: the bucket 'no-such-bucket-here' "
        r"does not exist at the endpoint http://127\.0\.0\.1:\d+\. Create it",
    ):
        _flow().run(store="s3://no-such-bucket-here/x")


def test_a_malformed_url_says_what_an_s3_url_looks_like():
    from nbflow.errors import NbflowError

    with pytest.raises(NbflowError, match=r"expected s3://BUCKET/PREFIX"):
        open_store("s3://A_Bad_Bucket/x")


_broken: list = []  # the store whose endpoint break_endpoint takes away


@task
def break_endpoint(port):
    # The endpoint dies while the run is going: every later request fails.
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    _broken[0].remote._client = None
    return 1


@task
def after(x, i):
    return x + i


def _run_that_loses_the_bucket(s3, monkeypatch, dead_port):
    """A run during which the bucket's endpoint goes away: its results and warnings."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # restored after the test
    store = open_store(s3.url)
    _broken[:] = [store]
    with Flow("faulty") as flow:
        b = break_endpoint(dead_port)
        for i in range(5):
            after(b, i)
    run, caught = _run(flow, store=store, executor="sequential")
    return run, caught, store


def test_a_remote_failing_mid_run_warns_once_and_the_run_finishes_locally(
    s3, monkeypatch, dead_port
):
    run, caught, store = _run_that_loses_the_bucket(s3, monkeypatch, dead_port)
    assert run.state is State.SUCCESS
    remote = [w for w in caught if issubclass(w.category, RemoteStoreWarning)]
    assert len(remote) == 1
    assert "the rest of this run uses the local tier only" in str(remote[0].message)
    # Nothing finished is lost: every result is in the local tier.
    keys = [r.key for r in run.task_runs]
    assert len(keys) == 6
    assert sorted(store.local.get_many(keys)) == sorted(keys)
    assert not [k for k in _objects(s3) if "/r/" in k]  # none reached the bucket


def test_a_later_run_writes_to_the_bucket_what_a_failed_remote_left_local(
    s3, tmp_path, monkeypatch, dead_port
):
    _new_home(tmp_path, monkeypatch, "laptop")
    first, _, _ = _run_that_loses_the_bucket(s3, monkeypatch, dead_port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)  # the bucket answers again
    again = _flow(3).run(store=s3.url)  # any later run pays the bucket back first
    assert again.ok
    stored = {k.rsplit("/", 1)[-1] for k in _objects(s3) if "/r/" in k}
    assert stored == {r.key for r in first.task_runs} | {r.key for r in again.task_runs}
    # A colleague now finds the first run's results in the bucket.
    _new_home(tmp_path, monkeypatch, "colleague")
    found = open_store(s3.url).get_many(sorted(r.key for r in first.task_runs))
    assert sorted(found.values()) == sorted(first.result(r.node) for r in first.task_runs)


# -- item 5: cache info and clear --------------------------------------------------------


def test_cache_info_counts_the_bucket_entries_with_their_sizes_and_ages(s3):
    import time

    start = time.time()
    _flow().run(store=s3.url)
    info = cache_info(s3.url)
    assert info["path"] == s3.url
    assert info["entries"] == 3
    assert info["per_task"] == {"numbers": 1, "total": 1, "label": 1}
    assert info["bytes"] > 3 * 60  # each entry: header, signature and pickle
    assert start - 2 <= info["oldest"] <= info["newest"] <= time.time() + 2
    assert info["local"]["entries"] == 3
    listed = open_store(s3.url).remote.listing()
    assert sorted(row["task"] for row in listed) == ["label", "numbers", "total"]
    assert all(row["size"] > 0 and row["created"] >= start - 2 for row in listed)


def test_clear_cache_removes_one_task_or_everything_from_both_tiers(s3):
    _flow().run(store=s3.url)
    assert clear_cache(task="total", path=s3.url) == 1
    assert cache_info(s3.url)["per_task"] == {"numbers": 1, "label": 1}
    assert cache_info(s3.url)["local"]["per_task"] == {"numbers": 1, "label": 1}
    assert clear_cache(older_than=3600, path=s3.url) == 0
    assert clear_cache(path=s3.url) == 2
    assert _objects(s3) == []
    assert cache_info(s3.url)["local"]["entries"] == 0


# -- the command line ------------------------------------------------------------------

FILE_FLOW = """
from nbflow import Flow, task


@task
def base():
    return 20


@task
def plus(x):
    return x + 1


with Flow("cli-remote") as flow:
    plus(base())
"""


def test_nbflow_run_store_and_cache_info_clear_store_work_on_the_bucket(s3, tmp_path, capsys):
    from nbflow.cli.main import main

    source = tmp_path / "pipeline.py"
    source.write_text(FILE_FLOW)
    assert main(["run", str(source), "--store", s3.url, "--executor", "sequential"]) == 0
    assert len([k for k in _objects(s3) if k.startswith("results/r/")]) == 2
    capsys.readouterr()
    assert main(["cache", "info", "--store", s3.url]) == 0
    out = capsys.readouterr().out
    assert f"store {s3.url}: 2 results" in out
    assert "base" in out and "plus" in out
    assert "created from " in out and "local copy " in out
    assert main(["cache", "clear", "--store", s3.url, "--task", "plus"]) == 0
    assert f"removed 1 cached results of task 'plus' from {s3.url}" in capsys.readouterr().out
    assert main(["cache", "clear", "--store", s3.url, "--path", str(tmp_path)]) == 2
    assert "Give --store URL or --path DIR, not both." in capsys.readouterr().err


def test_nbflow_cache_info_names_an_unreachable_store_and_the_fix(
    s3, monkeypatch, capsys, dead_port
):
    from nbflow.cli.main import main

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead_port}")
    assert main(["cache", "info", "--store", s3.url]) == 2
    err = capsys.readouterr().err
    assert f"nbflow: error: The result store '{s3.url}' cannot be reached" in err
    assert "Check AWS_ENDPOINT_URL" in err


def test_a_large_array_comes_back_from_the_bucket_equal_and_writable(s3, tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    value = {"a": np.arange(3_000_000, dtype=np.int64), "b": "label"}
    assert open_store(s3.url).set("big", value, task="arrays")
    _new_home(tmp_path, monkeypatch, "reader")
    back = open_store(s3.url).get("big")
    assert back["b"] == "label"
    assert np.array_equal(back["a"], value["a"])
    assert back["a"].flags.writeable and back["a"].flags.aligned
    back["a"][0] = -1  # a result read back behaves like one computed here
    assert back["a"][0] == -1


def test_a_large_entry_changed_in_the_bucket_or_from_an_untrusted_key_is_a_miss(
    s3, tmp_path, monkeypatch
):
    store = open_store(s3.url)
    assert store.set("big", b"y" * 3_000_000, task="blob")
    body = s3.client().get_object(Bucket=s3.bucket, Key="results/r/big")["Body"].read()
    changed = body[:2_000_000] + b"z" + body[2_000_001:]
    s3.client().put_object(Bucket=s3.bucket, Key="results/r/changed", Body=changed)
    s3.client().put_object(Bucket=s3.bucket, Key="results/r/cut", Body=body[:-100])
    _new_home(tmp_path, monkeypatch, "reader")
    with pytest.warns(UnsignedEntryWarning) as caught:
        found = open_store(s3.url).remote.entries(["big", "changed", "cut"])
    assert list(found) == ["big"]
    assert sorted(str(w.message).split(" in the result")[0] for w in caught) == [
        "nbflow: entry 'cut' is cut short or has bytes added",
        "nbflow: the signature of entry 'changed' by key 'alice' does not match",
    ]
    monkeypatch.setenv("NBFLOW_SIGNING_KEY", BOB)
    with pytest.warns(UnsignedEntryWarning, match="signed by key 'alice', which is not trusted"):
        assert open_store(s3.url).remote.entries(["big"]) == {}


def test_credentials_from_the_shared_aws_files_open_the_bucket(s3, tmp_path, monkeypatch):
    pytest.importorskip("boto3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    credentials = tmp_path / "credentials"
    credentials.write_text("[team]\naws_access_key_id = testing\naws_secret_access_key = t\n")
    config = tmp_path / "config"
    config.write_text("[profile team]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "team")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    run = _flow(2).run(store=s3.url)
    assert run.ok
    assert f"results/r/{run['total'].key}" in _objects(s3)
