"""Dask workers read and write a bucket themselves: a real LocalCluster (worker
processes started after the AWS variables point at the test server, so they inherit
them) and moto's server (conftest)."""

from __future__ import annotations

import pytest

from nbflow import Flow, State, task
from nbflow.store.base import open_store

distributed = pytest.importorskip("distributed")


@task
def make_blob(n):
    return b"x" * n


@task
def blob_size(blob):
    return len(blob)


@pytest.fixture
def cluster_client(s3):
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            processes=True,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_workers_write_results_to_the_bucket_and_read_hits_from_it(
    s3, cluster_client, tmp_path, monkeypatch
):
    from nbflow.executor import DaskExecutor

    executor = DaskExecutor(client=cluster_client)
    with Flow("dask-bucket") as flow:
        blobs = make_blob.map([200_000, 300_000])
        sizes = blob_size.map(blobs)
    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / "first"))
    first = flow.run(executor=executor, store=s3.url)
    assert first.ok and first.result(sizes) == [200_000, 300_000]
    keys = [c.key for c in first[blobs].children]
    store = open_store(s3.url)
    # The workers wrote the values to the bucket; this process never held them to
    # write, so its local tier does not have them.
    assert sorted(store.remote.get_many(keys).values()) == [b"x" * 200_000, b"x" * 300_000]
    assert store.local.get_many(keys) == {}

    monkeypatch.setenv("NBFLOW_HOME", str(tmp_path / "second"))
    second = flow.run(executor=executor, store=s3.url)
    assert [c.state for c in second[blobs].children] == [State.CACHED, State.CACHED]
    assert [c.state for c in second[sizes].children] == [State.CACHED, State.CACHED]
    # The large hits were left in the bucket: nothing read them here.
    fresh = open_store(s3.url)
    assert fresh.local.get_many(keys) == {}

    # A changed downstream task runs on a worker that reads its input from the bucket.
    with Flow("dask-bucket") as again:
        blobs2 = make_blob.map([200_000, 300_000])
        halves = half.map(blobs2)
    third = again.run(executor=executor, store=s3.url)
    assert third.ok and third.result(halves) == [100_000, 150_000]
    assert [c.state for c in third[blobs2].children] == [State.CACHED, State.CACHED]
    assert fresh.local.get_many(keys) == {}


@task
def half(blob):
    return len(blob) // 2
