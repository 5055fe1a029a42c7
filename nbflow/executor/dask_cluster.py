"""The Dask clusters and clients nbflow opens itself: kept warm for the session and
closed at exit. A cluster or client the user gives is never closed.

A LocalCluster nbflow starts listens on 127.0.0.1 only (scheduler, workers and
dashboard), with worker processes.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from nbflow.errors import NbflowError

log = logging.getLogger("nbflow")

INSTALL_HINT = "pip install 'jupyter-nbflow[dask]'"


def import_distributed() -> Any:
    """``distributed``, or an error that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise NbflowError(
            f"The Dask executor needs Dask distributed, which is not installed ({exc}). "
            f"Install it with: {INSTALL_HINT}"
        ) from None
    return distributed


# -- clusters and clients this process opened: warm for the session, closed at exit --
_own_lock = threading.Lock()
_own_cluster: dict[str, Any] = {}  # "config", "cluster", "client"
_own_clients: dict[str, Any] = {}  # by scheduler address
_exit_hook: list[bool] = []


def _close_at_exit() -> None:
    """Registered after ``distributed`` is imported, so it runs before Dask's own exit
    handlers (they run last-in first-out) while the cluster is still whole."""
    if not _exit_hook:
        # Before concurrent.futures stops its thread pools at exit (a threading exit
        # hook, run before atexit's): Dask runs future callbacks in such a pool, and a
        # future cancelled by the closing client would otherwise log an error.
        register = getattr(threading, "_register_atexit", None)
        try:
            if register is None:
                raise RuntimeError("no threading exit hooks")
            register(close_all)
        except RuntimeError:
            atexit.register(close_all)
        _exit_hook.append(True)


def local_client(n_workers: int | None, threads: int | None) -> Any:
    """The warm LocalCluster's client; a different configuration replaces it."""
    distributed = import_distributed()
    with _own_lock:
        _close_at_exit()
        config = (n_workers, threads)
        if _own_cluster and (
            _own_cluster["config"] != config or _own_cluster["client"].status != "running"
        ):
            _close_own_cluster()
        if not _own_cluster:
            cluster = distributed.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            )
            _own_cluster.update(config=config, cluster=cluster, client=distributed.Client(cluster))
        return _own_cluster["client"]


def address_client(address: str) -> Any:
    distributed = import_distributed()
    with _own_lock:
        _close_at_exit()
        client = _own_clients.get(address)
        if client is None or client.status != "running":
            try:
                # How long to try: Dask's own setting, distributed.comm.timeouts.connect.
                client = distributed.Client(address)
            except OSError as exc:
                raise NbflowError(
                    f"Could not connect to the Dask scheduler at '{address}': {exc}. Check "
                    "that it is running and reachable (e.g. 'tcp://host:8786')."
                ) from None
            _own_clients[address] = client
        return client


def _close_own_cluster() -> None:
    client, cluster = _own_cluster.get("client"), _own_cluster.get("cluster")
    _own_cluster.clear()
    for thing in (client, cluster):
        if thing is not None:
            try:
                thing.close()
            except Exception:
                log.debug("nbflow: closing %r failed", thing, exc_info=True)


def close_all() -> None:
    """Close the cluster and the connections nbflow opened (never a user's own)."""
    with _own_lock:
        _close_own_cluster()
        for client in _own_clients.values():
            try:
                client.close()
            except Exception:
                log.debug("nbflow: closing %r failed", client, exc_info=True)
        _own_clients.clear()


def warm_client(n_workers: int | None, threads: int | None) -> Any:
    """The warm cluster's client if it has this configuration, else None."""
    with _own_lock:
        if _own_cluster and _own_cluster["config"] == (n_workers, threads):
            return _own_cluster["client"]
        return None
