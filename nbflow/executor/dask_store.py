"""The result store seen from a Dask cluster: whether workers reach it, and cache hits
left on disk until a worker needs them.

A large cached value (one in a file of its own) is not read by the scheduler's
process: the hit becomes a ``CachedValue``, which turns into a Dask task reading it
on a worker only when a downstream attempt takes it as an input, and is read here
only when ``run.result`` asks for it. A hit nobody needs is never read.
"""

from __future__ import annotations

import os
import secrets
import threading
from typing import Any

from nbflow.executor.dask_worker import REMOTE, STORE_ID, StoreRef, load_value, reachable

_reachable: dict[tuple[str, StoreRef], bool] = {}


def store_ref(store: Any) -> StoreRef:
    """The store's id file (created once) lets workers check they see the same store;
    a store with a ``worker_store()`` (a bucket behind a local folder) is sent as the
    part workers reach over the network."""
    import cloudpickle

    remote = getattr(store, "worker_store", None)
    if callable(remote):
        far = remote()
        return StoreRef(str(far.url), REMOTE, bytes(cloudpickle.dumps(far)))

    path = os.path.join(str(store.path), STORE_ID)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path) as fh:
            ident = fh.read().strip()
    else:
        ident = secrets.token_hex(16)
        with os.fdopen(fd, "w") as fh:
            fh.write(ident)
    return StoreRef(str(store.path), ident, bytes(cloudpickle.dumps(store)))


def workers_reach(client: Any, ref: StoreRef) -> bool:
    """Whether the cluster's workers see the store (asked once per client and store)."""
    seen = _reachable.get((client.id, ref))
    if seen is None:
        seen = _reachable[(client.id, ref)] = bool(
            client.submit(reachable, ref, pure=False).result()
        )
    return seen


class CachedValue:
    """A cache hit left in the store until a worker (or ``run.result``) needs it."""

    __slots__ = ("_future", "_lock", "key", "name", "ref", "store")

    def __init__(self, store: Any, ref: StoreRef, key: str, name: str) -> None:
        self.store = store
        self.ref = ref
        self.key = key
        self.name = name  # the Dask key its load gets
        self._future: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<cached value {self.key} in '{self.ref.path}'>"

    def future(self, client: Any) -> Any:
        """A Dask future of the value read on a worker (submitted once)."""
        with self._lock:
            if self._future is None:
                self._future = client.submit(
                    load_value, self.ref, self.key, key=self.name, pure=False
                )
            return self._future

    def value(self) -> Any:
        """The value, read here (from the worker that already read it, if one has)."""
        if self._future is not None:
            return self._future.result()
        return self.store.get(self.key)


_CONTAINERS = (list, tuple, dict)


def bind(value: Any, client: Any) -> Any:
    """``value`` with each ``CachedValue`` in it (at any depth of lists, tuples and
    dicts, as the scheduler builds inputs) replaced by its Dask future."""
    t = type(value)
    if t is CachedValue:
        return value.future(client)
    if t is list or t is tuple:
        if not any(type(v) is CachedValue or type(v) in _CONTAINERS for v in value):
            return value
        return t(bind(v, client) for v in value)
    if t is dict:
        if not any(type(v) is CachedValue or type(v) in _CONTAINERS for v in value.values()):
            return value
        return {k: bind(v, client) for k, v in value.items()}
    return value
