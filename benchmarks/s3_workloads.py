"""S3: results on an S3-compatible store (moto's server on 127.0.0.1, started here).

- a cached re-run of 1,000 small tasks against the bucket with a warm local tier,
  against the same re-run on the local store alone (target <= 3x);
- the same re-run with a cold local tier (a fresh home folder each repeat: the hits
  are found in the bucket; target <= 0.5 s over loopback), and the requests it makes;
- a 300 MB result (50 MB with --quick) written to and read back from the bucket by
  the store (pickle, signature, one object) against obstore's own put/get of the same
  bytes (target <= 1.5x each).

Needs the ``s3`` extra (obstore) and moto (the ``test`` extra); rows say n/a without.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from typing import Any

from harness import Config, Row, check, limit_row, measure, median, ratio_row, timed

from nbflow import Flow, task
from nbflow.store.base import open_store

Result = tuple[list[Row], dict[str, Any]]
N = 1000


@task
def small(i: int) -> int:
    return i * i


def _server() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def bench_s3(cfg: Config) -> Result:
    try:
        import boto3
        import numpy as np
        import obstore
    except ImportError as exc:
        return [Row("S3", f"skipped: {exc}", "", None)], {}

    from nbflow.store.remote import RemoteStore

    server, endpoint = _server()
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "NBFLOW_SIGNING_KEY": "bench:bench-secret-0123456789",
    }
    saved = {k: os.environ.get(k) for k in (*env, "NBFLOW_HOME")}
    os.environ.update(env)
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="nbflow-bench")
        url = "s3://nbflow-bench/bench"
        rows, data = _rerun(cfg, url)
        big_rows, big_data = _large(cfg, url, obstore, np, RemoteStore)
        many_rows = _listing(cfg, RemoteStore)
        return rows + big_rows + many_rows, {**data, **big_data}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def _rerun(cfg: Config, url: str) -> Result:
    with Flow("s3-rerun") as flow:
        nodes = [small(i) for i in range(N)]
    local = tempfile.mkdtemp(prefix="nbflow-s3-local-")
    warm = tempfile.mkdtemp(prefix="nbflow-s3-warm-")
    os.environ["NBFLOW_HOME"] = warm
    check(flow.run(store=local).ok, "S3 first local run")
    first = flow.run(store=url)
    check(first.ok, "S3 first remote run")
    keys = [f"r/{r.key}" for r in first.task_runs]

    def one(store: Any) -> float:
        dt, run = timed(lambda: flow.run(store=store))
        check(run.ok and run.counts() == {"cached": N}, f"S3 all cached: {run.counts()}")
        check(run.result(nodes[7]) == 49, "S3 value")
        return dt

    def c_local() -> float:
        return one(local)

    def c_warm() -> float:
        os.environ["NBFLOW_HOME"] = warm
        return one(url)

    asked: list[int] = []

    def c_cold() -> float:
        os.environ["NBFLOW_HOME"] = tempfile.mkdtemp(prefix="nbflow-s3-cold-")
        store = open_store(url)
        dt = one(store)
        asked.append(sum(store.remote.requests.values()))
        return dt

    from concurrent.futures import ThreadPoolExecutor

    import obstore

    from nbflow.store.remote import PARALLEL, RemoteStore

    client = RemoteStore(url).client
    pool = ThreadPoolExecutor(PARALLEL)

    def c_client() -> float:
        # The floor: the client alone fetching the same objects, as many at once.
        dt, got = timed(lambda: list(pool.map(lambda k: obstore.get(client, k).bytes(), keys)))
        check(len(got) == N, "S3 raw GETs")
        return dt

    contenders = {"local": c_local, "warm": c_warm, "cold": c_cold, "client": c_client}
    samples = measure(contenders, cfg.repeats)
    pool.shutdown()
    lo, wa, co, cl = (median(samples[k]) for k in ("local", "warm", "cold", "client"))
    rows = [
        ratio_row("S3", "cached re-run of 1,000 tasks, warm local tier", "s", wa, "local", lo, 3),
        limit_row(
            "S3",
            "cached re-run of 1,000 tasks, cold local tier",
            "s",
            co,
            0.5,
            {"local": lo, "obstore 1,000 GETs": cl},
            note="hits found from one listing per task; only the value asked for is read",
        ),
        limit_row(
            "S3",
            "requests to the bucket per cold re-run of 1,000 tasks (value asked for included)",
            "n",
            max(asked),
            3,
            note="the start-of-run check, the task's marker listing, one GET",
        ),
        ratio_row(
            "S3",
            "cold local tier / the client's own 1,000 parallel GETs",
            "x",
            co / cl,
            "x",
            1.0,
            1.5,
        ),
    ]
    rows[-1].nbflow, rows[-1].baselines = None, {}
    return rows, {"rerun_samples_s": samples}


def _listing(cfg: Config, store_class: Any) -> list[Row]:
    """``cache info`` over 100,000 entries (10,000 with --quick): what this side does
    with a listing that size, against obstore's local file system store (moto answers
    each page of a large bucket in time that grows with the bucket, so it cannot say)."""
    import hashlib
    import shutil

    from obstore.store import LocalStore

    from nbflow.store.clouds import AZURE

    n = 10_000 if cfg.quick else 100_000
    root = tempfile.mkdtemp(prefix="nbflow-s3-listing-")
    try:
        os.makedirs(os.path.join(root, "r"))
        for i in range(n):
            key = hashlib.sha256(b"%d" % i).hexdigest()[:32]
            with open(os.path.join(root, "r", key), "wb") as fh:
                fh.write(b"x" * 100)
            folder = os.path.join(root, "t", f"task{i % 20}", "bench")
            os.makedirs(folder, exist_ok=True)
            open(os.path.join(folder, key), "wb").close()
        remote = store_class("s3://nbflow-bench/listing")
        remote._client = LocalStore(root)
        remote.cloud = AZURE  # one listing in name order: the local store lists unsorted
        remote.check = lambda **_: None
        dt, info = timed(remote.info)
        check(info["entries"] == n and len(info["per_task"]) == 20, "S3 listing")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        limit_row(
            "S3",
            f"cache info over {n:,} entries (and their markers), this side only",
            "s",
            dt,
            10.0,
            note="a bucket adds one round trip per 1,000 objects, 16 key ranges at once",
        )
    ]


def _large(cfg: Config, url: str, obstore: Any, np: Any, store_class: Any) -> Result:
    size = (50 if cfg.quick else 300) * 2**20
    value = np.frombuffer(np.random.default_rng(0).bytes(size), dtype=np.uint8)
    raw = value.tobytes()
    remote = store_class(url)
    remote.begin_run()
    client = remote.client

    def c_store() -> dict[str, float]:
        write, ok = timed(lambda: remote.set("big", value, task="big"))
        check(ok, "S3 large write")
        read, back = timed(lambda: remote.get("big"))
        check(back is not None and back.nbytes == size and back[-1] == value[-1], "S3 read")
        remote.delete("big")
        return {"write": write, "read": read}

    def c_client() -> dict[str, float]:
        write, _ = timed(lambda: obstore.put(client, "raw/big", raw))
        read, back = timed(lambda: obstore.get(client, "raw/big").bytes())
        check(len(back) == size, "S3 raw read")
        obstore.delete(client, "raw/big")
        return {"write": write, "read": read}

    repeats = max(3, cfg.repeats // 2)
    samples = measure({"store": c_store, "client": c_client}, repeats)
    mb = size // 2**20
    rows = [
        ratio_row(
            "S3",
            f"{mb} MB result written to the bucket",
            "s",
            median(samples["store.write"]),
            "obstore.put",
            median(samples["client.write"]),
            1.5,
        ),
        ratio_row(
            "S3",
            f"{mb} MB result read back from the bucket",
            "s",
            median(samples["store.read"]),
            "obstore.get",
            median(samples["client.read"]),
            1.5,
        ),
    ]
    return rows, {"large_samples_s": samples}
