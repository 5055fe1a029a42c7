"""The result store seam: a ``ResultStore`` protocol and stores opened by URL scheme.

``open_store(url_or_path)`` opens a plain path, or a ``file://`` URL, as the file
store (diskcache, ``nbflow.store.file``); another scheme opens with the opener
registered for it by ``register_store(scheme, opener)``. Runs take a store as
``flow.run(store=...)``: a path or URL, an opened store, or False for none.

>>> class Memory:
...     def __init__(self, url): self.url, self.values = url, {}
...     def get(self, key, default=None): return self.values.get(key, default)
...     def get_many(self, keys): return {k: self.values[k] for k in keys if k in self.values}
...     def sizes(self, keys): return {k: 0 for k in keys if k in self.values}
...     def set(self, key, value, *, task, expire=None): self.values[key] = value; return True
...     def begin_run(self): pass
...     def delete(self, key): self.values.pop(key, None)
...     def info(self): return {"path": self.url, "entries": len(self.values)}
...     def clear(self, task=None, older_than=None):
...         n = len(self.values)
...         self.values.clear()
...         return n
>>> register_store("memory", Memory)
>>> store = open_store("memory://scratch")
>>> store.set("k", 42, task="demo"), store.get("k"), isinstance(store, ResultStore)
(True, 42, True)
>>> unregister_store("memory")
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from nbflow import settings
from nbflow.errors import NbflowError, did_you_mean
from nbflow.seam import Registry, check_factory

__all__ = [
    "ResultStore",
    "open_store",
    "register_store",
    "store_schemes",
    "unregister_store",
]


@runtime_checkable
class ResultStore(Protocol):
    """Task results by cache key: what the engine and the front ends call.

    A store never raises for a value it cannot keep or read back: ``set`` returns
    False and ``get`` gives ``default``, and the run goes on computing (the file store
    warns with ``CacheWarning``). A store given to a Dask run travels to its workers,
    so it must pickle (the file store pickles as its folder).

    Optional: ``present(keys, tasks) -> set[str]``, the keys whose entries will read
    back, found without reading a value (``tasks``: the names of the tasks whose
    results the keys are, which a store may use to narrow a listing). A store that
    has it gets lazy cache hits (a run settles them all at once and reads a value only
    when it is needed); any other store has each hit's value read when the run
    settles it. A store whose ``present`` leaves out only keys it does not have sets
    ``present_is_complete``: a run then skips the lookup of a task whose key was not
    there when it started.
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        ...

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        """The values of those ``keys`` that are stored (the cache hits of a step)."""
        ...

    def sizes(self, keys: list[str]) -> dict[str, int]:
        """For each of ``keys`` stored: the size of its value if it is large enough to
        be read where an executor's workers run, else 0. Reads no value."""
        ...

    def set(self, key: str, value: Any, *, task: str, expire: float | None = None) -> bool:
        """Keep ``value`` (the result of ``task``) under ``key``; False if it was not."""
        ...

    def begin_run(self) -> None:
        """A run starts using the store (e.g. it tries again after an earlier failure)."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if it is stored."""
        ...

    def info(self) -> dict[str, Any]:
        """``path`` (where the store is, for people), ``entries``, ``bytes`` and
        ``per_task`` (entries per task name)."""
        ...

    def clear(self, task: str | None = None, older_than: float | None = None) -> int:
        """Remove entries (of one task, and/or kept more than ``older_than`` s); how many."""
        ...


Opener = Callable[[str], ResultStore]

# "file" comes first and opens plain paths too. Its opener is a path, imported on
# first use, so that this seam does not load diskcache.
# "s3", "gs" and "az" are built in the same way (the client, obstore, loads with the store).
_REMOTE = "nbflow.store.remote:open_remote_store"
_openers: Registry[Opener | str] = Registry(
    {"file": "nbflow.store.file:open_file_store", "s3": _REMOTE, "gs": _REMOTE, "az": _REMOTE}
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def register_store(scheme: str, opener: Opener | str, *, replace: bool = False) -> None:
    """Open ``scheme://...`` stores with ``opener(url)``, which returns a ``ResultStore``.

    ``opener`` may be a ``"module:attribute"`` path, imported when a store of that
    scheme is first opened. A scheme already registered is refused unless
    ``replace=True``.
    """
    if not isinstance(scheme, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise NbflowError(
            f"Expected a URL scheme such as 's3' or 'redis' (a letter, then letters, digits, "
            f"'+', '-' or '.'), but got {scheme!r}."
        )
    check_factory(
        opener,
        f"Expected the opener of '{scheme}://' stores to be a callable taking the URL or "
        f"a 'module:attribute' path, but got {opener!r}.",
    )
    scheme = scheme.lower()
    _openers.add(
        scheme,
        opener,
        replace=replace,
        taken=f"Result stores '{scheme}://' already have an opener; pass replace=True to "
        "register_store to replace it.",
    )


def unregister_store(scheme: str) -> None:
    """Forget the opener of ``scheme://`` stores (the file store's cannot be removed)."""
    scheme = scheme.lower()
    if scheme == "file":
        raise NbflowError("The 'file' store opens plain paths and cannot be unregistered.")
    _openers.remove(scheme, missing=f"No opener is registered for '{scheme}://' stores.")


def store_schemes() -> tuple[str, ...]:
    """The URL schemes ``open_store`` knows, ``file`` first.

    >>> store_schemes()[0]
    'file'
    """
    return _openers.names()


def open_store(url_or_path: str | os.PathLike[str] | None = None) -> ResultStore:
    """The result store at ``url_or_path``: a folder or ``file://`` URL (the file store),
    or a URL of a registered scheme such as ``s3://bucket/prefix``. Default:
    ``NBFLOW_STORE``, else the home folder (``NBFLOW_HOME`` or ``./.nbflow``)."""
    if url_or_path is None:
        url_or_path = settings.store()
    match = _SCHEME.match(url_or_path) if isinstance(url_or_path, str) else None
    scheme = match.group(1).lower() if match else "file"
    opener = _openers.get(scheme)
    if opener is None:
        known = store_schemes()
        raise NbflowError(
            f"Cannot open the result store '{url_or_path}': no opener is registered for "
            f"'{scheme}://'.{did_you_mean(scheme, known)} Known schemes: "
            f"{', '.join(known)}. Give a folder path, or register an opener with "
            f"nbflow.store.base.register_store('{scheme}', opener)."
        )
    if isinstance(opener, str):
        module, _, attribute = opener.partition(":")
        opener = getattr(importlib.import_module(module), attribute)
    # The file opener also takes a path or None (the home folder).
    store: Any = opener(url_or_path)  # type: ignore[arg-type]
    if not isinstance(store, ResultStore):
        raise NbflowError(
            f"The opener of '{scheme}://' stores returned {store!r}, which is not a result "
            "store (see nbflow.store.base.ResultStore for the methods it needs). Fix the "
            f"opener given to register_store('{scheme}', ...)."
        )
    return store
