"""A run finds its tasks' entries in the bucket from their markers (one listing per task,
no entry read), settles them as cache hits, and reads an entry only when its value is
needed, checking its signature then. Against moto's server on 127.0.0.1 (conftest)."""

from __future__ import annotations

import pickle
import warnings

from nbflow import Flow, task
from nbflow.store.base import open_store
from nbflow.store.remote import UnsignedEntryWarning
from nbflow.store.signing import seal

N = 40


@task
def square(i):
    return i * i


@task
def add(xs):
    return sum(xs)


@task
def describe(total):
    return f"sum {total}"


def _flow() -> tuple[Flow, object]:
    with Flow("listing") as flow:
        squares = [square(i) for i in range(N)]
        end = describe(add(squares))
    return flow, end


def _home(tmp_path, monkeypatch, name):
    home = tmp_path / name
    home.mkdir()
    monkeypatch.setenv("NBFLOW_HOME", str(home))


def _fresh(store):
    store.remote.requests.clear()
    return store


def test_a_cold_local_tier_settles_every_hit_from_listings_and_reads_what_is_asked(
    s3, tmp_path, monkeypatch
):
    _home(tmp_path, monkeypatch, "alice")
    flow, end = _flow()
    assert flow.run(store=s3.url).ok
    _home(tmp_path, monkeypatch, "second")
    store = open_store(s3.url)
    store.remote.begin_run()  # the start-of-run check, out of the count
    run = flow.run(store=_fresh(store))
    assert run.counts() == {"cached": N + 2}
    asked = store.remote.requests
    # One listing per task (square, add, describe), and not one entry read.
    assert asked["list"] <= 3 and asked["get"] == 0 and asked["head"] == 0, asked
    assert run.result(end) == f"sum {sum(i * i for i in range(N))}"
    assert asked["get"] == 1
    key = run[end].key
    assert store.local.get(key) == run.result(end)  # kept in the local tier
    again = flow.run(store=_fresh(store))
    assert again.counts() == {"cached": N + 2}
    assert again.result(end) == run.result(end)
    assert store.remote.requests["get"] == 0  # read from the local tier


def test_a_first_run_on_an_empty_bucket_looks_nothing_up_per_task(s3):
    flow, end = _flow()
    store = open_store(s3.url)
    store.remote.begin_run()
    run = flow.run(store=_fresh(store))
    assert run.ok and run.result(end) == f"sum {sum(i * i for i in range(N))}"
    asked = store.remote.requests
    assert asked["get"] == 0 and asked["head"] == 0, asked
    assert asked["put"] == 2 * (N + 2)  # each entry and its marker


def test_an_entry_whose_marker_names_a_trusted_key_but_fails_its_check_is_computed_again(
    s3, tmp_path, monkeypatch
):
    _home(tmp_path, monkeypatch, "alice")
    flow, end = _flow()
    first = flow.run(store=s3.url)
    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    # A forgery under a trusted name: the marker is right, the signature is not.
    total_key = first["add"].key
    blob = b"".join(
        seal(total_key, [pickle.dumps(Boom())], task="add", signer=("alice", b"x" * 32))
    )
    s3.client().put_object(Bucket=s3.bucket, Key=f"results/r/{total_key}", Body=blob)
    _home(tmp_path, monkeypatch, "second")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(store=s3.url)
        assert run["add"].cached
        assert run.result("add") == sum(i * i for i in range(N))  # computed again
    assert not marker.exists()
    refused = [str(w.message) for w in caught if issubclass(w.category, UnsignedEntryWarning)]
    assert len(refused) == 1 and f"the signature of entry '{total_key}'" in refused[0]
    assert run.result(end) == f"sum {sum(i * i for i in range(N))}"


def test_entries_listed_without_a_signer_in_their_marker_are_still_read(s3, tmp_path, monkeypatch):
    _home(tmp_path, monkeypatch, "alice")
    flow, end = _flow()
    first = flow.run(store=s3.url)
    client = s3.client()
    # Markers as an earlier layout wrote them: t/<task>/<key>.
    listed = client.list_objects_v2(Bucket=s3.bucket, Prefix="results/t/")["Contents"]
    assert len(listed) == N + 2
    for marker in listed:
        _, _, name, signer, key = marker["Key"].split("/")
        assert signer == "alice"
        client.delete_object(Bucket=s3.bucket, Key=marker["Key"])
        client.put_object(Bucket=s3.bucket, Key=f"results/t/{name}/{key}", Body=b"")
    _home(tmp_path, monkeypatch, "second")
    run = flow.run(store=s3.url)
    assert run.counts() == {"cached": N + 2}
    assert run.result(end) == first.result(end)
    info = open_store(s3.url).remote.info()
    assert info["per_task"] == {"square": N, "add": 1, "describe": 1}


def test_cache_info_lists_every_entry_once_across_its_parallel_ranges(s3):
    store = open_store(s3.url).remote
    store.begin_run()
    names = ["0", "0f", "1", "9z", "A", "big", "e", "effff", "f", "ff", "~tilde", "-dash"]
    names += [f"{i:032x}" for i in range(0, 2**128, 2**124)]  # one key per range edge
    for name in names:
        assert store.set(name, name.upper(), task="odd names")
    store.flush()
    listed = [row["key"] for row in store.listing()]
    assert sorted(listed) == sorted(names)
    assert store.info()["per_task"] == {"odd names": len(names)}
